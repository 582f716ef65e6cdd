"""Model cards: written by save_for_inference from the Trainer's record and the evaluation runs actually measured,
read back by huggingface_hub as Hub metadata (model-index), and updated by ``hf-metaid evaluate --save-to-card``."""

from __future__ import annotations

import json

import datasets
import pytest
from huggingface_hub import ModelCard

import hf_metaid as hm
from conftest import quiet_args, tiny_model
from hf_metaid.cli import main
from hf_metaid.saving.inference_folder import save_for_inference
from hf_metaid.saving.model_card import EVALUATION_FILE, TRAINING_FILE, add_evaluation, evaluation_record
from hf_metaid.training.trainer import build_trainer, lora_config

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """A tiny model after three Trainer steps, its tokenizer and Trainer."""
    _, tokenizer, train = tiny
    args = quiet_args(tmp_path_factory.mktemp("run"), max_steps=3, per_device_train_batch_size=8, seed=7)
    trainer = build_trainer(tiny_model(tokenizer), tokenizer, train, args)
    trainer.train()
    return trainer, tokenizer


def test_a_model_saved_without_evaluation_says_so(trained, tmp_path):
    trainer, tokenizer = trained
    folder = save_for_inference(trainer, tokenizer, tmp_path / "model")
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text2text-generation"
    assert {"recommendation", "generative-retrieval", "semantic-ids"} <= set(data["tags"])
    assert "model-index" not in data and "base_model" not in data  # not evaluated; built from a configuration
    assert "Not evaluated" in card.text and card.text.startswith("\n# model\n")
    record = json.loads((folder / TRAINING_FILE).read_text())
    summary = next(entry for entry in trainer.state.log_history if "train_runtime" in entry)
    assert record["steps"] == 3 and record["seed"] == 7 and record["mode"] == "full"
    assert record["train_seconds"] == summary["train_runtime"] and record["train_loss"] == summary["train_loss"]
    assert f"mean training loss: {summary['train_loss']:.4f}" in card.text
    fingerprint = tokenizer.entity_vocabulary.fingerprint
    assert f"fingerprint `{fingerprint}`" in card.text
    assert "trust_remote_code=True" in card.text and "@inproceedings{huang2025metaid" in card.text
    assert "`user {user} items {history}`" not in card.text  # the library's OpenP5 templates were used
    assert "has interacted with items {history}" in card.text
    assert "- beyond the paper's model: nothing" in card.text


def test_the_card_names_the_options_beyond_the_papers_model():
    from hf_metaid.saving.model_card import _item_options

    config = {"metaid_history_in_decoder": True, "metaid_item_output": True, "metaid_repeat_bias": True}
    assert _item_options(config) == [
        "the history in the decoder",
        "items' own output vectors",
        "a learned score of items already read",
    ]
    sampled = _item_options({"metaid_item_loss": 1.0, "metaid_item_loss_negatives": 1024})
    assert sampled == ["an all-items objective (weight 1, against 1024 drawn items)"]
    assert _item_options({"metaid_item_loss": 0.5}) == ["an all-items objective (weight 0.5, against every item)"]


def test_measured_metrics_become_the_model_index(trained, tiny, tmp_path):
    trainer, tokenizer = trained
    split = tiny[0]
    metrics = hm.evaluate_recommender(trainer.model, tokenizer, split["test"], ks=(1, 5), progress=False)
    record = evaluation_record(metrics, split="test", data="synthetic", exclude_seen=False)
    folder = save_for_inference(trainer, tokenizer, tmp_path / "model", evaluation=record)
    card = ModelCard.load(folder / "README.md")
    results = {(r.metric_type, r.dataset_split): r for r in card.data.eval_results}
    assert set(results) == {("hr@1", "test"), ("hr@5", "test"), ("ndcg@1", "test"), ("ndcg@5", "test")}
    assert results[("hr@5", "test")].metric_value == pytest.approx(metrics["hr@5"], abs=1e-6)
    assert results[("ndcg@5", "test")].metric_args == {
        "k": 5,
        "history_items": "kept",
        "decoding": "beam",
        "template": "seen",
    }
    assert "Not evaluated" not in card.text and f"| @5 | {metrics['hr@5']:.4f} |" in card.text
    # a second run under another protocol is added; the same protocol again replaces the first
    exact = evaluation_record(metrics | {"hr@5": 0.5}, split="test", data="synthetic", mode="exact")
    add_evaluation(folder, exact)
    add_evaluation(folder, exact | {"metrics": exact["metrics"] | {"hr@5": 0.25}})
    runs = json.loads((folder / EVALUATION_FILE).read_text())["results"]
    assert sorted((run["mode"], run["metrics"]["hr@5"]) for run in runs) == [
        ("beam", pytest.approx(metrics["hr@5"])),
        ("exact", 0.25),
    ]
    assert len(ModelCard.load(folder / "README.md").data.eval_results) == 8


def test_evaluation_records_are_checked(trained, tmp_path):
    trainer, tokenizer = trained
    with pytest.raises(hm.InvalidArgumentError, match="evaluate_recommender's output"):
        evaluation_record({"loss": 1.0}, split="test", data="x")
    with pytest.raises(hm.InvalidArgumentError, match="each evaluation must be"):
        save_for_inference(trainer, tokenizer, tmp_path / "m", evaluation=[{"hr@10": 0.1}])
    assert not (tmp_path / "m").exists()


def test_a_lora_card_names_peft_and_its_base(tiny, tmp_path):
    _, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    trainer = build_trainer(model, tokenizer, train, quiet_args(tmp_path / "run", max_steps=1), lora=lora_config(model))
    trainer.train()
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert "weights in `base/`" in card.text and "LoRA" in card.text


@pytest.mark.slow
def test_cli_train_then_evaluate_save_to_card(tmp_path, capsys):
    """The command path leaves a folder whose card holds the figures evaluate printed."""
    data = tmp_path / "tiny.txt"
    data.write_text("".join(" ".join([f"u{u}"] + [f"i{(u * 3 + k) % 12}" for k in range(5)]) + "\n" for u in range(16)))
    vocab, model = tmp_path / "vocab", tmp_path / "model"
    assert (
        main(["index", "--data", str(data), "--out", str(vocab), "--num-clusters", "3", "--embedding", "spectral"]) == 0
    )
    quick = ["--max-steps", "2", "--batch-size", "8", "--d-model", "32", "--warmup-steps", "0"]
    assert main(["train", "--data", str(data), "--vocab", str(vocab), "--out", str(model), *quick]) == 0
    assert "Not evaluated" in (model / "README.md").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(data), "--cutoffs", "1,5", "--save-to-card"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    hr5 = float(printed[-2].split("HR@5=")[1].split()[0])
    card = ModelCard.load(model / "README.md")
    value = next(r.metric_value for r in card.data.eval_results if r.metric_type == "hr@5")
    assert value == pytest.approx(hr5, abs=5e-5)
    assert next(r.dataset_name for r in card.data.eval_results) == "tiny.txt"
    assert "sha256 of the training rows" in card.text
    assert main(["evaluate", "org/not-here", "--save-to-card"]) == 2
    assert "--save-to-card writes into a local model folder" in capsys.readouterr().err
