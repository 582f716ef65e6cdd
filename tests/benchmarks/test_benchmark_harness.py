"""benchmarks/harness.py: an arm whose result exists is skipped, a result is written whole or not at all, and every
arm is evaluated under both protocols (history kept, history left out)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def tiny_recipe():
    """The ``fast`` recipe cut to a tiny model, 4 clusters and 2 training steps."""
    import hf_metaid as hm

    fast = hm.recipes.get("fast")
    return dataclasses.replace(
        fast,
        index=dataclasses.replace(fast.index, num_clusters=4),
        model=dataclasses.replace(fast.model, d_model=32, d_ff=48),
        training=dataclasses.replace(fast.training, batch_size=8, max_steps=2),
    )


def test_an_arm_is_trained_saved_and_evaluated_both_ways_once(tmp_path, one_thread):
    from conftest import write_beauty_lines
    from harness import PROTOCOLS, evaluate_protocols, run_arm, train_and_save
    from hf_metaid.saving.inference_folder import load_for_inference
    from hf_metaid.workflow.splitting import split_data

    splits, names = split_data(str(write_beauty_lines(tmp_path / "beauty60.txt", 60)))
    model_folder = tmp_path / "work" / "model"
    calls = []

    def measure() -> dict:
        calls.append(1)
        facts = train_and_save(tiny_recipe(), splits, names, model_folder, tmp_path / "work" / "training")
        model, tokenizer = load_for_inference(model_folder)
        return {**facts, "metrics": evaluate_protocols(model, tokenizer, splits["test"])}

    out = tmp_path / "results" / "arm.json"
    record = run_arm(out, measure)
    assert calls == [1] and record["steps"] == 2 and (model_folder / "config.json").is_file()
    assert json.loads(out.read_text()) == json.loads(json.dumps(record))
    assert set(record["metrics"]) == {protocol for protocol, _ in PROTOCOLS} == {"kept", "left out"}
    users = len(splits["test"])
    assert all(metrics["num_users"] == users for metrics in record["metrics"].values())
    assert record["metrics"]["left out"]["seen@10"] == 0  # the history is out of the ranking under this protocol only

    def must_not_run() -> dict:
        raise AssertionError("a finished arm ran again")

    assert run_arm(out, must_not_run) == json.loads(out.read_text())  # skipped: the stored record
    assert calls == [1]


def test_a_failure_while_writing_leaves_no_partial_result(tmp_path, monkeypatch):
    from harness import run_arm

    out = tmp_path / "results" / "arm.json"
    real_write_text = Path.write_text

    def half_then_fail(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        run_arm(out, lambda: {"metrics": {"kept": {"hr@10": 0.5}}})
    assert not out.exists() and list(out.parent.iterdir()) == []  # nothing that looks finished, no leftovers
    monkeypatch.undo()
    run_arm(out, lambda: {"metrics": {"kept": {"hr@10": 0.5}}})
    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        run_arm(out, lambda: {"metrics": {"kept": {"hr@10": 0.25}}}, force=True)
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"metrics": {"kept": {"hr@10": 0.5}}}  # the old result, whole


def test_one_power_law_generator_and_one_machine_line():
    import benchmark_common
    import embedding_quality
    import index_scale
    import scheme_index

    assert index_scale.power_law_interactions is scheme_index.power_law_interactions
    assert index_scale.power_law_interactions is benchmark_common.power_law_interactions
    assert embedding_quality.machine is scheme_index.machine is benchmark_common.machine
    assert benchmark_common.machine(" (1 thread used)").startswith(f"{benchmark_common.cpu_model()}, ")
