"""Prompt datasets, Trainer integration (full and LoRA), save/load round trips, resuming, and 2-process training.

Run as a script (``accelerate launch ... tests/test_training.py OUT_DIR``) this file is also the worker of the
multi-process test: it trains a tiny model on a fixed full batch and writes what each rank saw.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import hf_metaid as hm
from hf_metaid.collator import MetaIDDataCollator
from hf_metaid.data import (
    build_eval_prompts,
    build_training_prompts,
    count_training_samples,
    tokenize_prompts,
)
from hf_metaid.prompt_templates import (
    COMPACT_TEMPLATES,
    DIRECT_SEEN,
    SEQUENTIAL_SEEN,
    SEQUENTIAL_UNSEEN,
    TEMPLATE_SETS,
    check_templates,
    fill_template,
)
from hf_metaid.saving import load_for_inference, save_for_inference
from hf_metaid.training import RecommendationEvalCallback, build_trainer, lora_config, training_arguments

datasets.disable_progress_bars()


# ----------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train ~15x faster on one thread than on two contended ones (the test machine has 2 cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_vocabulary(users, items, num_clusters=4, dim=16, seed=0) -> hm.EntityVocabulary:
    """Unique random (cluster, rank) codes: fast, and enough for everything but ID quality."""
    rng = np.random.default_rng(seed)
    count = len(users) + len(items)
    ranks = -(-count // num_clusters)
    flat = rng.permutation(num_clusters * ranks)[:count]
    codes = np.stack([flat // ranks, flat % ranks], axis=1)
    vectors = rng.standard_normal((num_clusters, dim))
    return hm.EntityVocabulary(users, items, codes[: len(users)], codes[len(users) :], vectors)


def synthetic_interactions(num_users=12, num_items=20, seed=0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    rows = {"user": [], "item": []}
    for user in range(num_users):
        for item in rng.choice(num_items, size=int(rng.integers(5, 9)), replace=False):
            rows["user"].append(f"u{user}")
            rows["item"].append(f"i{item}")
    return hm.load_interactions(datasets.Dataset.from_dict(rows))


def tiny_setup(seed=0, dropout=0.0, **data):
    """Split, tokenizer, and tokenized sequential prompts of a small synthetic data set."""
    interactions = synthetic_interactions(seed=seed, **data)
    split = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(None, random_vocabulary(names["users"], names["items"], seed=seed))
    prompts = build_training_prompts(split["train"], tokenizer, tasks=("sequential",), seed=seed)
    return split, tokenizer, tokenize_prompts(prompts, tokenizer)


def tiny_model(tokenizer, seed=0, dropout=0.0) -> hm.MetaIDForConditionalGeneration:
    torch.manual_seed(seed)
    return hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(dropout_rate=dropout), tokenizer)


@pytest.fixture(scope="module")
def tiny():
    return tiny_setup()


@pytest.fixture(scope="module")
def beauty_data():
    interactions = hm.load_interactions()
    users = interactions["user"][:]
    first_users = list(dict.fromkeys(users))[:200]
    end = len(users) - users[::-1].index(first_users[-1])
    subset = interactions.select(range(end))
    names = hm.catalogue(subset)
    tokenizer = hm.MetaIDTokenizer.from_base(None, random_vocabulary(names["users"], names["items"], num_clusters=8))
    return {"full": interactions, "subset": subset, "split": hm.leave_one_out(subset), "tokenizer": tokenizer}


def quiet_args(output_dir, **overrides):
    fields = {"logging_steps": 1, "save_strategy": "no", "warmup_steps": 0, "disable_tqdm": True}
    fields.update(overrides)
    return training_arguments(output_dir, **fields)


def fixed_batch(tokenizer, dataset, size=16):
    return MetaIDDataCollator(tokenizer)([dataset[i] for i in range(min(size, len(dataset)))])


def logits_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def loss_of(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


# ------------------------------------------------------------------------------------------------------ prompts
def test_sequential_counts_on_beauty(beauty_data):
    train = beauty_data["split"]["train"]
    sequences = hm.user_sequences(beauty_data["subset"])
    expected = sum(len(items) - 3 for items in sequences.values())  # train part = items[:-2]; targets from i = 1
    prompts = build_training_prompts(train, beauty_data["tokenizer"], tasks=("sequential",))
    assert len(prompts) == expected
    both = build_training_prompts(train, beauty_data["tokenizer"])
    assert len(both) == expected + len(train)  # direct: every training interaction once
    assert count_training_samples(train) == {"sequential": expected, "direct": len(train)}
    # the paper's number, counted without building a prompt
    full_train = hm.leave_one_out(beauty_data["full"])["train"]
    assert count_training_samples(full_train, tasks=("sequential",)) == {"sequential": 131_413}


def test_training_prompt_content():
    interactions = hm.load_interactions(
        datasets.Dataset.from_dict(
            {"user": ["a"] * 6 + ["b"] * 3, "item": ["1", "2", "3", "4", "5", "6", "7", "8", "9"]}
        )
    )
    split = hm.leave_one_out(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(None, random_vocabulary(["a", "b"], [str(i) for i in range(1, 10)]))
    only = {"sequential": {"seen": ("U {user} H {history}",)}, "direct": {"seen": ("U {user}",)}}
    prompts = build_training_prompts(split["train"], tokenizer, templates=only, max_history=2)
    tok = tokenizer.item_tokens
    user_a = tokenizer.user_tokens("a")
    sequential = [
        (f"U {user_a} H {tok('1')}", tok("2")),
        (f"U {user_a} H {tok('1')} , {tok('2')}", tok("3")),
        (f"U {user_a} H {tok('2')} , {tok('3')}", tok("4")),  # history capped at the last 2
    ]
    direct = [(f"U {user_a}", tok(item)) for item in "1234"]
    rows = list(zip(prompts["source"][:], prompts["target"][:], strict=True))
    assert rows[:7] == sequential + direct
    # user b has a single training item: no sequential sample, one direct sample
    assert rows[7:] == [(f"U {tokenizer.user_tokens('b')}", tok("7"))]


def test_template_choice_is_seeded_and_expandable(beauty_data):
    train, tokenizer = beauty_data["split"]["train"], beauty_data["tokenizer"]
    one = build_training_prompts(train, tokenizer, seed=3)
    again = build_training_prompts(train, tokenizer, seed=3)
    other = build_training_prompts(train, tokenizer, seed=4)
    assert one["source"][:] == again["source"][:]
    assert one["source"][:] != other["source"][:]
    assert one["target"][:] == other["target"][:]
    used = {s for s in SEQUENTIAL_SEEN if any(src.startswith(s.split("{")[0]) for src in one["source"][:])}
    assert len(used) > 1  # templates are mixed, not always the first
    full = build_training_prompts(train, tokenizer, tasks=("direct",), templates_per_sample="all")
    assert len(full) == len(DIRECT_SEEN) * len(train)
    two = build_training_prompts(train, tokenizer, tasks=("direct",), templates_per_sample=2)
    assert len(two) == 2 * len(train)
    pairs = list(zip(two["source"][:], two["target"][:], strict=True))
    assert all(pairs[i] != pairs[i + 1] for i in range(0, len(pairs), 2))  # two distinct templates per sample
    with pytest.raises(ValueError, match="templates_per_sample"):
        build_training_prompts(train, tokenizer, templates_per_sample=99)
    with pytest.raises(ValueError, match="unknown task"):
        build_training_prompts(train, tokenizer, tasks=("rating",))


def test_eval_prompts_match_recommend(beauty_data):
    test, tokenizer = beauty_data["split"]["test"], beauty_data["tokenizer"]
    unseen = build_eval_prompts(test, tokenizer)
    row = unseen[0]
    assert set(unseen.column_names) == {"user", "history", "target", "source"}
    shown = [tokenizer.item_tokens(item) for item in row["history"][-10:]]
    assert row["source"] == fill_template(SEQUENTIAL_UNSEEN, tokenizer.user_tokens(row["user"]), shown)
    # "seen" is the template model.recommend uses by default: evaluation and inference prompts agree
    seen = build_eval_prompts(test, tokenizer, template="seen", max_history=5)
    prompt = tiny_model(tokenizer)._prompt(tokenizer, row["user"], row["history"], None, 5)
    assert seen[0]["source"] == prompt
    direct = build_eval_prompts(test, tokenizer, task="direct")
    assert "{" not in direct[0]["source"] and tokenizer.user_tokens(row["user"]) in direct[0]["source"]
    custom = build_eval_prompts(test, tokenizer, template="{history} -> {user}", max_history=1)
    assert custom[0]["source"] == f"{shown[-1]} -> {tokenizer.user_tokens(row['user'])}"
    with pytest.raises(ValueError, match="template"):
        build_eval_prompts(test, tokenizer, template="no placeholders")


def test_tokenize_prompts_labels(beauty_data):
    split, tokenizer = beauty_data["split"], beauty_data["tokenizer"]
    train = tokenize_prompts(build_training_prompts(split["train"], tokenizer, tasks=("sequential",)), tokenizer)
    assert train.column_names == ["input_ids", "attention_mask", "labels"]
    raw = build_training_prompts(split["train"], tokenizer, tasks=("sequential",))
    first_target = raw[0]["target"]
    ids = tokenizer.convert_tokens_to_ids([t + ">" for t in first_target.split(">")[:-1]])
    assert train[0]["labels"] == [*ids, tokenizer.eos_token_id]
    assert train[0]["input_ids"][-1] == tokenizer.eos_token_id
    assert set(ids) <= set(train[0]["input_ids"]) | set(train[0]["labels"])
    evaluation = tokenize_prompts(build_eval_prompts(split["test"], tokenizer), tokenizer, keep_columns=["user"])
    assert evaluation.column_names == ["user", "input_ids", "attention_mask", "labels"]
    row = split["test"][0]
    assert evaluation[0]["labels"] == [*tokenizer.item_token_ids(row["target"]), tokenizer.eos_token_id]
    short = tokenize_prompts(raw, tokenizer, max_source_length=8)
    assert max(len(ids) for ids in short["input_ids"][:]) == 8


def test_default_prompts_have_no_unknown_words(beauty_data):
    """Every built-in template must tokenize without <unk> on the offline base (else a word is lost)."""
    split, tokenizer = beauty_data["split"], beauty_data["tokenizer"]
    parts = []
    for templates in TEMPLATE_SETS.values():
        parts.append(build_training_prompts(split["train"], tokenizer, templates=templates, templates_per_sample="all"))
        for task in ("sequential", "direct"):
            parts.append(build_eval_prompts(split["test"], tokenizer, task=task, templates=templates))
    prompts = datasets.concatenate_datasets(parts)
    assert prompts.num_rows > 0
    unknown = {
        source
        for source, ids in zip(prompts["source"][:], tokenizer(prompts["source"][:])["input_ids"], strict=True)
        if tokenizer.unk_token_id in ids
    }
    assert not unknown, sorted(unknown)[:3]


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


def test_build_trainer_refuses_other_vocabulary(tiny, tmp_path):
    _, tokenizer, train = tiny
    other = hm.MetaIDTokenizer.from_base(None, random_vocabulary(["x", "y"], ["p", "q", "r"]))
    with pytest.raises(hm.VocabularyMismatchError):
        build_trainer(tiny_model(tokenizer), other, train, quiet_args(tmp_path))


# ----------------------------------------------------------------------------------------------------- training
def test_full_finetune_learns_and_round_trips(tiny, tmp_path):
    split, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    batch = fixed_batch(tokenizer, train)
    before = loss_of(model, batch)
    args = quiet_args(tmp_path / "run", max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3)
    trainer = build_trainer(model, tokenizer, train, args)
    trainer.train()
    after = loss_of(trainer.model, batch)
    assert after < before - 1.0
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged[-1] < logged[0]

    folder = save_for_inference(trainer, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = load_for_inference(folder)
    assert type(loaded).__name__ == "MetaIDForConditionalGeneration"
    assert torch.equal(logits_of(trainer.model, batch), logits_of(loaded, batch))
    row = split["test"][0]
    expected = trainer.model.recommend(tokenizer, user=row["user"], history=row["history"], k=5)
    assert loaded.recommend(loaded_tokenizer, user=row["user"], history=row["history"], k=5) == expected


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
    with pytest.raises(ValueError, match="base="):
        load_for_inference(folder)  # a base built from a configuration cannot be rebuilt from a name
    loaded, loaded_tokenizer = load_for_inference(folder, base=tiny_model(tokenizer))
    assert torch.equal(logits_of(loaded, batch), reference)
    row = split["test"][1]
    expected = peft_model.recommend(tokenizer, user=row["user"], history=row["history"], k=5)
    assert loaded.recommend(loaded_tokenizer, user=row["user"], history=row["history"], k=5) == expected


@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
def test_lora_reload_from_saved_base_checkpoint(tiny, tmp_path, tree_softmax):
    """A base with a checkpoint path is rebuilt from the adapter config alone, and F is checked after loading.
    The prompt format and the tree softmax the adapter was trained with are set on the rebuilt base."""
    _, tokenizer, train = tiny
    tiny_model(tokenizer).save_pretrained(tmp_path / "base")
    base = hm.MetaIDForConditionalGeneration.from_pretrained(tmp_path / "base")
    base.set_prompt_format(COMPACT_TEMPLATES, max_history=4)  # the adapter's training words, not the base's
    base.set_tree_softmax(tokenizer, tree_softmax)
    args = quiet_args(tmp_path / "run", max_steps=3, per_device_train_batch_size=8)
    trainer = build_trainer(base, tokenizer, train, args, lora=lora_config(base, r=4))
    trainer.train()
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    batch = fixed_batch(tokenizer, train)
    loaded, _ = load_for_inference(folder)
    assert torch.equal(logits_of(loaded, batch), logits_of(trainer.model, batch))
    assert loaded.get_base_model().config.metaid_prompt_templates == check_templates(COMPACT_TEMPLATES)
    assert loaded.get_base_model().config.metaid_max_history == 4
    assert loaded.get_base_model().config.metaid_tree_softmax == tree_softmax


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


# ---------------------------------------------------------------------------------------------- multi-process
SAMPLES = 16


def distributed_worker(output_dir: str | os.PathLike, world_size: int) -> None:
    """Train full, LoRA and tree-softmax models on one fixed full batch; write losses, world size and parameters
    per rank."""
    torch.set_num_threads(1)
    output_dir = Path(output_dir)
    _, tokenizer, train = tiny_setup(seed=1)
    train = train.select(range(SAMPLES))
    for mode in ("full", "lora", "tree"):
        args = quiet_args(
            output_dir / mode,
            max_steps=3,
            per_device_train_batch_size=SAMPLES // world_size,
            optim="sgd",  # plain SGD: a gradient scaled by the world size shows in the parameters
            # smaller steps for the tree softmax: at 0.05 its first steps amplify the float noise of splitting the
            # batch (other padding per rank) to ~1e-2 relative; one process with split batches drifts the same way
            learning_rate=0.02 if mode == "tree" else 0.05,
            use_cpu=True,
            seed=0,
        )
        model = tiny_model(tokenizer, seed=1)
        if mode == "tree":  # its item table is a buffer, which DDP broadcasts
            model.set_tree_softmax(tokenizer)
        lora = lora_config(model, dropout=0.0) if mode == "lora" else None  # no dropout: ranks draw other masks
        trainer = build_trainer(model, tokenizer, train, args, lora=lora)
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        initial = torch.cat([p.detach().flatten().double() for p in trainable])
        trainer.train()
        rank = trainer.args.process_index
        final = torch.cat([p.detach().flatten().double() for p in trainable])
        torch.save({"initial": initial, "final": final}, output_dir / f"{mode}-rank{rank}.pt")
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        record = {"world_size": trainer.args.world_size, "losses": losses, "rank": rank}
        (output_dir / f"{mode}-rank{rank}.json").write_text(json.dumps(record))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_training_matches_single_process(tmp_path):
    """accelerate launch with 2 CPU processes (gloo) trains ONE model whose steps match a single process."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        __file__, str(tmp_path / "ddp"), "2",
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


if __name__ == "__main__":
    distributed_worker(sys.argv[1], int(sys.argv[2]))


def test_recommendation_metrics_are_logged_during_training(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    model = tiny_model(tokenizer)
    callback = RecommendationEvalCallback(tokenizer, split["validation"], every_epoch=True, ks=(1, 5))
    args = quiet_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=8)
    trainer = build_trainer(model, tokenizer, dataset, args, callbacks=[callback])
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_hr@5" in entry]
    assert [entry["epoch"] for entry in logged] == [1.0, 2.0]
    direct = hm.evaluate_recommender(model, tokenizer, split["validation"], ks=(1, 5), progress=False)
    assert logged[-1]["eval_hr@5"] == direct["hr@5"] and logged[-1]["eval_ndcg@1"] == direct["ndcg@1"]
    assert logged[-1]["eval_num_users"] == split["validation"].num_rows


def test_evaluation_asks_in_the_recorded_training_words(tiny):
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer)
    rows = split["validation"]
    openp5 = hm.evaluate_recommender(model, tokenizer, rows, ks=(1, 5), progress=False)
    model.set_prompt_format(COMPACT_TEMPLATES, max_history=2)
    recorded = hm.evaluate_recommender(model, tokenizer, rows, ks=(1, 5), progress=False)
    spelled_out = hm.evaluate_recommender(
        model, tokenizer, rows, ks=(1, 5), progress=False, template="user {user} items {history}", max_history=2
    )
    assert {k: recorded[k] for k in ("hr@5", "mrr@5")} == {k: spelled_out[k] for k in ("hr@5", "mrr@5")}
    assert recorded["mrr@5"] != openp5["mrr@5"]
    unseen = hm.evaluate_recommender(model, tokenizer, rows, ks=(5,), template="unseen", progress=False)
    explicit = hm.evaluate_recommender(
        model,
        tokenizer,
        rows,
        ks=(5,),
        template=COMPACT_TEMPLATES["sequential"]["unseen"][0],
        max_history=2,
        progress=False,
    )
    assert unseen["mrr@5"] == explicit["mrr@5"]


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
