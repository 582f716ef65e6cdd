"""The collator, training defaults, Trainer integration (full and LoRA), resuming, length grouping, and
2-process training."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

import hf_metaid as hm
from conftest import fixed_batch, logits_of, named_vocabulary, quiet_args, tiny_model
from hf_metaid.saving.inference_folder import load_for_inference, save_for_inference
from hf_metaid.training.collator import MetaIDDataCollator
from hf_metaid.training.trainer import build_trainer, has_native_bf16, lora_config, training_arguments
from ranking_checks import assert_same_recommendations
from workers.accelerate_worker import distributed_worker

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")

WORKER = Path(__file__).resolve().parents[1] / "workers" / "accelerate_worker.py"


def test_collator_pads_labels_with_minus_100(tiny):
    _, tokenizer, train = tiny
    features = [dict(train[0]), dict(train[1]), {**train[2], "user": "x"}]
    features[1]["labels"] = features[1]["labels"][:1]
    batch = MetaIDDataCollator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["labels"][1].tolist()[1:] == [-100, -100]
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == (3, width)
    short = min(range(3), key=lambda i: len(features[i]["input_ids"]))
    assert batch["attention_mask"][short].sum() == len(features[short]["input_ids"])
    assert MetaIDDataCollator(tokenizer, pad_to_multiple_of=8)(features)["input_ids"].shape[1] % 8 == 0


def test_defaults_and_config(tiny):
    _, tokenizer, _ = tiny
    args = training_arguments("unused")
    assert args.weight_decay == 0.0 and args.learning_rate == 1e-3 and not args.remove_unused_columns
    assert args.use_cpu == (not torch.cuda.is_available())
    config = lora_config(tiny_model(tokenizer))
    assert config.trainable_token_indices == {"shared": list(tokenizer.id_token_range)}
    assert list(config.modules_to_save) == ["metaid_augmentation"]
    assert not hm.MetaIDForConditionalGeneration.accepts_loss_kwargs


def test_cpu_training_runs_torchs_deterministic_algorithms(tiny, tmp_path):
    """Two CPU threads sum some gradients in a varying order (the same seed gave another demo model at each run):
    CPU training switches torch's deterministic algorithms on, unless asked not to."""
    _, tokenizer, train = tiny
    assert training_arguments(tmp_path, use_cpu=True).full_determinism
    assert not training_arguments(tmp_path, use_cpu=True, full_determinism=False).full_determinism
    assert not training_arguments(tmp_path, use_cpu=False).full_determinism
    seen = []

    class Probe(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(torch.are_deterministic_algorithms_enabled())

    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        args = quiet_args(tmp_path / "run", max_steps=2, per_device_train_batch_size=8, use_cpu=True)
        build_trainer(tiny_model(tokenizer), tokenizer, train, args, callbacks=[Probe()]).train()
    finally:
        torch.use_deterministic_algorithms(before)
    assert seen == [True, True]


def test_bf16_auto_follows_the_hardware(tmp_path, monkeypatch):
    assert not training_arguments(tmp_path).bf16  # off unless asked
    assert training_arguments(tmp_path, bf16=True, use_cpu=True).bf16
    for amx in (True, False):  # on a CPU "auto" is float32, AMX tiles or not (benchmarks/train_memory.py)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert training_arguments(tmp_path, bf16="auto", use_cpu=True).bf16 is False
        assert training_arguments(tmp_path, bf16=True, use_cpu=True).bf16 is True  # asked for, it is on
        assert has_native_bf16(use_cpu=True) is amx
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported in (False, True):  # on a GPU, with the GPU's bf16 support, whatever the CPU has
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert has_native_bf16() is supported
    assert has_native_bf16(use_cpu=True) is False  # use_cpu trains on the CPU even where a GPU is
    assert training_arguments(tmp_path, bf16="auto", use_cpu=True).bf16 is False
    with pytest.raises(ValueError, match="bf16"):
        training_arguments(tmp_path, bf16="on")


def test_build_trainer_refuses_other_vocabulary(tiny, tmp_path):
    _, tokenizer, train = tiny
    other = hm.MetaIDTokenizer.from_base(None, named_vocabulary(["x", "y"], ["p", "q", "r"]))
    with pytest.raises(hm.VocabularyMismatchError):
        build_trainer(tiny_model(tokenizer), other, train, quiet_args(tmp_path))


@pytest.mark.numerics
def test_lora_trains_id_rows_and_augmentation(tiny, tmp_path):
    split, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    original = copy.deepcopy(model)
    batch = fixed_batch(tokenizer, train)
    args = quiet_args(tmp_path / "run", max_steps=20, per_device_train_batch_size=16, learning_rate=1e-2)
    trainer = build_trainer(model, tokenizer, train, args, lora=True)
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("trainable_tokens_delta" in name for name in trainable)
    assert any("metaid_augmentation.modules_to_save" in name for name in trainable)
    assert not any(name.endswith("shared.weight") for name in trainable)
    trainer.train()
    peft_model = trainer.model

    merged = copy.deepcopy(peft_model).merge_and_unload()
    ids = tokenizer.id_token_range
    old, new = slice(0, ids.start), slice(ids.start, ids.stop)
    assert torch.equal(merged.shared.weight[old], original.shared.weight[old])  # old rows bit-identical
    assert torch.equal(merged.shared.weight[ids.stop :], original.shared.weight[ids.stop :])
    changed_rows = (merged.shared.weight[new] != original.shared.weight[new]).any(dim=1)
    assert changed_rows.float().mean() > 0.5  # the rows that appear in the data moved
    assert merged.lm_head.weight.data_ptr() == merged.shared.weight.data_ptr()
    f_weight = merged.encoder.metaid_augmentation.weight
    assert not torch.equal(f_weight, original.encoder.metaid_augmentation.weight)

    # F acts inside the PEFT-wrapped model: perturbing the trained copy of F changes the logits
    reference = logits_of(peft_model, batch)
    active = peft_model.get_base_model().encoder.metaid_augmentation.modules_to_save["default"]
    trained_f = active.weight.detach().clone()
    with torch.no_grad():
        active.weight.add_(0.5)
        assert not torch.allclose(logits_of(peft_model, batch), reference)
        active.weight.copy_(trained_f)
    assert torch.equal(logits_of(peft_model, batch), reference)

    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file()
    assert not (folder / "model.safetensors").exists()
    loaded, loaded_tokenizer = load_for_inference(folder)  # the base built from a configuration travels in base/
    # to float32 rounding, not bit for bit: a reloaded model's weights sit at other memory alignments, which some
    # BLAS kernels (MKL's SSE4.2 path) round otherwise
    torch.testing.assert_close(logits_of(loaded, batch), reference, rtol=1e-5, atol=1e-5)
    row = split["test"][1]
    expected = peft_model.recommend(tokenizer, user=row["user"], history=row["history"], k=5)
    got = loaded.recommend(loaded_tokenizer, user=row["user"], history=row["history"], k=5)
    assert_same_recommendations(got, expected, atol=1e-5)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_from_checkpoint_matches_straight_run(tiny, tmp_path, lora):
    """Stop after N steps, resume to 2N: the same parameters as one 2N-step run (dropout on, so RNG state counts)."""
    _, tokenizer, train = tiny
    steps = 4

    def run(output_dir, resume=None, seed=0):
        args = quiet_args(
            output_dir, max_steps=2 * steps, save_strategy="steps", save_steps=steps, per_device_train_batch_size=8
        )
        model = tiny_model(tokenizer, seed=seed, dropout=0.1)
        trainer = build_trainer(model, tokenizer, train, args, lora=lora_config(model) if lora else None)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "straight")
    checkpoint = tmp_path / "straight" / f"checkpoint-{steps}"
    assert checkpoint.is_dir()
    # another initialisation: only the checkpoint can bring the resumed run back onto the straight one
    resumed = run(tmp_path / "resumed", resume=str(checkpoint), seed=1)
    assert resumed.state.global_step == 2 * steps
    losses = [[(h["step"], h["loss"]) for h in t.state.log_history if "loss" in h] for t in (straight, resumed)]
    assert [step for step, _ in losses[1]] == list(range(1, 2 * steps + 1))  # steps 1..N come from the checkpoint
    assert [loss for _, loss in losses[1]] == pytest.approx([loss for _, loss in losses[0]], rel=1e-5)
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_length_grouped_sampling_gets_a_length_column_and_trims_padding(tiny, tmp_path):
    """Short and long prompts mixed pad every batch to its longest; grouping by length needs the lengths as a
    column, which build_trainer adds instead of letting the Trainer read every row."""
    _, tokenizer, dataset = tiny
    args = quiet_args(tmp_path, per_device_train_batch_size=4, max_steps=2, train_sampling_strategy="group_by_length")
    trainer = build_trainer(tiny_model(tokenizer), tokenizer, dataset, args)
    lengths = trainer.train_dataset["length"][:]
    assert lengths == [len(ids) for ids in trainer.train_dataset["input_ids"][:]]
    assert len(set(lengths)) > 1
    grouped = [batch["input_ids"] for batch in trainer.get_train_dataloader()]
    shuffled = build_trainer(
        tiny_model(tokenizer), tokenizer, dataset, quiet_args(tmp_path, per_device_train_batch_size=4)
    )
    plain = [batch["input_ids"] for batch in shuffled.get_train_dataloader()]
    assert "length" not in shuffled.train_dataset.column_names
    padded = lambda batches: sum(int((b == tokenizer.pad_token_id).sum()) for b in batches)  # noqa: E731
    assert padded(grouped) < padded(plain)
    trainer.train()


# ---------------------------------------------------------------------------------------------- multi-process
def test_length_grouped_sampler_reads_the_lengths_once_as_a_list(tiny, tmp_path):
    """The Trainer gives LengthGroupedSampler the dataset's lazy column, read one row at a time at every epoch start
    (seconds per epoch on Beauty); the trainer's sampler holds a list instead, and draws the same batches as one built
    from the lengths directly."""
    _, tokenizer, dataset = tiny
    args = quiet_args(tmp_path, per_device_train_batch_size=4, max_steps=2, train_sampling_strategy="group_by_length")
    trainer = build_trainer(tiny_model(tokenizer), tokenizer, dataset, args)
    sampler = trainer._get_train_sampler()
    lengths = trainer.train_dataset["length"][:]
    assert type(sampler.lengths) is list and sampler.lengths == lengths
    reference = LengthGroupedSampler(4, lengths=lengths)
    torch.manual_seed(5)
    drawn = list(sampler)
    torch.manual_seed(5)
    assert drawn == list(reference) and sorted(drawn) == list(range(len(lengths)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_training_matches_single_process(tmp_path):
    """accelerate launch with 2 CPU processes (gloo) trains ONE model whose steps match a single process, and
    evaluates it once for both."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(WORKER), str(tmp_path / "ddp"), "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_USE_CPU": "true"}
    (tmp_path / "ddp").mkdir()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]

    distributed_worker(tmp_path / "single", 1)  # the same data, seed and global batch in one process
    for mode in ("full", "lora", "tree"):
        ranks = [json.loads((tmp_path / "ddp" / f"{mode}-rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["world_size"] for r in ranks] == [2, 2]
        params = [torch.load(tmp_path / "ddp" / f"{mode}-rank{r}.pt") for r in (0, 1)]
        assert torch.equal(params[0]["final"], params[1]["final"])  # one model: the gradients were shared
        single = json.loads((tmp_path / "single" / f"{mode}-rank0.json").read_text())
        assert single["world_size"] == 1
        # the logged loss is the mean over the global batch, not world_size times it
        assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-4)
        reference = torch.load(tmp_path / "single" / f"{mode}-rank0.pt")
        assert torch.equal(params[0]["initial"], reference["initial"])
        update = reference["final"] - reference["initial"]
        # float noise only (about 1e-4 measured); a world-size factor on the gradients would give about 1
        assert (params[0]["final"] - reference["final"]).norm() / update.norm() < 1e-2
    # the main process decodes and shares the recommendation metrics: each rank decides on checkpoints with them
    evaluations = [json.loads((tmp_path / "ddp" / f"lora-rank{r}.json").read_text())["evaluation"] for r in (0, 1)]
    assert {"eval_hr@5", "eval_ndcg@5", "eval_num_users"} <= set(evaluations[1])
    assert evaluations[1] == pytest.approx(evaluations[0])
