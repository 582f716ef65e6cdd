"""benchmarks/quality_budget.py: the best arm per training budget is chosen on validation, never on test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def record(arm: str, split: str, seconds: float, hr: float, left_out: float | None = None) -> dict:
    """An arm's JSON; HR@10 with the history left out is ``hr`` + 0.001 unless given."""
    metrics = {"hr@5": hr / 2, "hr@10": hr, "ndcg@5": hr / 4, "ndcg@10": hr / 3, "seconds": 1.0}
    out = hr + 0.001 if left_out is None else left_out
    return {
        "arm": arm,
        "data": "beauty",
        "split": split,
        "what": f"arm {arm}",
        "steps": 10,
        "epochs": 1.0,
        "train_seconds": seconds,
        "train_threads": 1,
        "cpu": "test cpu",
        "command": f"run {arm}",
        "metrics": {"kept": metrics, "left out": {**metrics, "hr@10": out}},
    }


def chosen_arms(rows: list[str]) -> list[tuple[str, str]]:
    return [(row.split(" | ")[0].removeprefix("| "), row.split(" | ")[1]) for row in rows[2:]]


def test_each_budget_takes_the_best_validation_arm_that_fits(tmp_path):
    import quality_budget

    records = [
        record("fast", "validation", 500, 0.05),
        record("fast", "test", 500, 0.04),
        record("mid", "validation", 1500, 0.08),
        record("mid", "test", 1500, 0.01),  # a poor test figure must not change the choice
        record("slow", "validation", 1000, 0.07),
        record("slow", "test", 1000, 0.09),
        record("untested", "validation", 3000, 0.2),  # no test result: not a candidate
        record("markov", "validation", 100, 0.5) | {"data": "markov"},
    ]
    rows = quality_budget.budget_rows(records, budgets=(5, 15, 30, 60))
    kept, left_out = (described for _, described in quality_budget.SELECTIONS)
    none = "(no arm with a test result trained within it)"
    assert chosen_arms(rows) == [
        ("5 minutes", kept),
        ("5 minutes", left_out),
        ("15 minutes", kept),
        ("15 minutes", left_out),
        ("30 minutes", kept),
        ("30 minutes", left_out),
        ("60 minutes", kept),
        ("60 minutes", left_out),
    ]
    assert [row.split(" | ")[2] for row in rows[2:]] == [none, none, "fast", "fast", "mid", "mid", "mid", "mid"]
    assert "| 0.0800 |" in rows[6] and "| 0.0810 |" in rows[7]  # each row's validation figure is its protocol's
    assert rows[7].endswith("| 0.0110 | 0.0033 |")  # test left out, then its NDCG@10
    for item in records:
        (tmp_path / f"{item['arm']}.{item['data']}.{item['split']}.json").write_text(json.dumps(item))
    quality_budget.table(tmp_path, tmp_path / "quality_budget.md")
    text = (tmp_path / "quality_budget.md").read_text()
    assert "## The best recipe per training budget" in text and f"| 60 minutes | {kept} | mid |" in text
    assert text.count("| fast | beauty |") == 2  # every arm is listed below, validation and test


def test_each_protocol_chooses_on_its_own_validation_figure():
    """An arm that leads with the history kept but not left out is chosen for the paper's protocol only."""
    import quality_budget

    records = [
        record("keeps", "validation", 100, 0.09, left_out=0.091),
        record("keeps", "test", 100, 0.06),
        record("leaves", "validation", 100, 0.08, left_out=0.095),
        record("leaves", "test", 100, 0.05),
    ]
    rows = quality_budget.budget_rows(records, budgets=(15,))
    assert [row.split(" | ")[2] for row in rows[2:]] == ["keeps", "leaves"]


def test_seen_is_added_to_an_old_record_from_its_saved_model(tmp_path):
    """``seen`` evaluates the saved model again, refuses a record whose hit rates it does not reproduce, and adds
    seen@k, which is what the library's evaluation reports for the same model."""
    import hf_metaid as hm
    import quality_budget
    from conftest import synthetic_interactions, tiny_model
    from hf_metaid.workflow.splitting import split_data

    data = tmp_path / "tiny.csv"
    synthetic_interactions(num_users=12, num_items=30).to_csv(data, index=False)
    splits, names = split_data(str(data))
    tokenizer = hm.MetaIDTokenizer.from_base(None, hm.MetaIDIndexer(num_clusters=3, dim=8).fit(splits["train"], names))
    model = tiny_model(tokenizer).eval()
    folder = tmp_path / "work" / quality_budget.arm_tag("tiny-arm", str(data)) / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    measured = hm.evaluate_recommender(model, tokenizer, splits["test"], progress=False)
    old = {key: value for key, value in measured.items() if not key.startswith("seen@")}
    results = tmp_path / "results"
    results.mkdir()
    path = results / "tiny-arm.tiny.test.json"
    path.write_text(json.dumps({"data": str(data), "metrics": {"kept": {**old, "hr@10": old["hr@10"] + 0.01}}}))
    with pytest.raises(SystemExit, match="evaluated again"):
        quality_budget.backfill_seen("tiny-arm", "test", 1, tmp_path / "work", str(data), results)
    path.write_text(json.dumps({"data": str(data), "metrics": {"kept": old}}))
    quality_budget.backfill_seen("tiny-arm", "test", 1, tmp_path / "work", str(data), results)
    kept = json.loads(path.read_text())["metrics"]["kept"]
    assert kept["seen@10"] == pytest.approx(measured["seen@10"]) and kept["seen@5"] == pytest.approx(measured["seen@5"])
    assert kept["seen@10"] > 0  # an untrained model ranks history items too, so the figure carries information


def test_a_named_recipe_runs_as_it_is_as_the_arm_recipe_name(tmp_path, monkeypatch, one_thread):
    """``run --recipe NAME`` trains the named recipe unchanged (the arm ``recipe-NAME``); an arm and a recipe together,
    or neither, are refused."""
    import dataclasses
    import sys

    import hf_metaid as hm
    import quality_budget
    from conftest import write_beauty_lines

    data = write_beauty_lines(tmp_path / "beauty60.txt", 60)
    results = tmp_path / "results"
    argv = ["quality_budget.py", "run", "--data", str(data), "--threads", "1", "--max-steps", "1"]
    argv += ["--work", str(tmp_path / "work"), "--results", str(results)]
    for wrong in ([], ["prompt-demo", "--recipe", "fast"]):
        monkeypatch.setattr(sys, "argv", [*argv, *wrong])
        with pytest.raises(SystemExit) as done:
            quality_budget.main()
        assert done.value.code == 2
    monkeypatch.setattr(sys, "argv", [*argv, "--recipe", "fast"])
    quality_budget.main()
    record = json.loads((results / "recipe-fast.beauty60.validation.json").read_text())
    fast = hm.recipes.get("fast")
    as_stored = json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(fast, training=dataclasses.replace(
        fast.training, max_steps=1)))))  # fmt: skip
    assert (record["arm"], record["steps"]) == ("recipe-fast", 1) and record["what"].startswith("the recipe fast: ")
    assert (record["model"], record["training"]) == (as_stored["model"], as_stored["training"])
    assert record["index"] == fast.index.to_dict()
    assert "chain_calibration" in record  # fast has the chain prior: calibrated at training

    # a wider range scored on the saved model, whose weights are the learned ones times the factor training chose:
    # as if training had chosen twice its factor, the saved weights doubled and the JSON saying so
    chosen_at_training = record["chain_calibration"]["scale"]
    recorded = record["chain_calibration"]["scores"][f"{float(chosen_at_training)}"]
    weights_file = tmp_path / "work" / "recipe-fast.beauty60" / "model" / "model.safetensors"
    weights = load_file(weights_file)
    prior = "metaid_chain_prior.weight"
    weights[prior] = weights[prior] * 2
    save_file(weights, weights_file, metadata={"format": "pt"})
    trained = 2 * chosen_at_training
    record["chain_calibration"]["scale"] = trained
    (results / "recipe-fast.beauty60.validation.json").write_text(json.dumps(record))
    saved = weights_file.read_bytes()
    scales = f"{chosen_at_training:g},{trained:g}"
    argv_scan = ["quality_budget.py", "calibration", "--recipe", "fast", "--data", str(data), "--threads", "1"]
    argv_scan += ["--work", str(tmp_path / "work"), "--results", str(results), "--scales", scales]
    monkeypatch.setattr(sys, "argv", argv_scan)
    quality_budget.main()
    scan = json.loads((results / "calibration" / "recipe-fast.beauty60.json").read_text())
    assert scan["trained_scale"] == trained and set(scan["scores"]) == set(scales.split(","))
    # the learned weights times the factor training chose score what its calibration recorded, on the same users
    assert scan["scores"][f"{chosen_at_training:g}"] == pytest.approx(recorded, abs=1e-12)
    assert scan["users"] == record["chain_calibration"]["users"] and weights_file.read_bytes() == saved
    quality_budget.table(results, tmp_path / "quality_budget.md")
    assert (
        "| recipe-fast | " + str(data) + f" | x{trained:g} | x{scan['chosen']:g} |"
        in (tmp_path / "quality_budget.md").read_text()
    )
    for bad in ("0,1", "a,b"):
        monkeypatch.setattr(sys, "argv", [*argv_scan[:-1], bad])
        with pytest.raises(SystemExit) as refused:
            quality_budget.main()
        assert refused.value.code == 2


def test_a_recipe_variant_is_its_named_recipe_with_only_its_changes(tmp_path, monkeypatch, one_thread):
    """An arm of ``RECIPE_VARIANTS`` trains its named recipe with the stated settings and nothing else changed (a
    stated setting may be the recipe's own: best-earlier3 is best since the reach); the command line runs it by name
    and records what it tests."""
    import dataclasses
    import sys

    import hf_metaid as hm
    import quality_budget
    from conftest import write_beauty_lines

    assert quality_budget.RECIPE_VARIANTS
    for arm, (name, model_changes, training_changes, what) in quality_budget.RECIPE_VARIANTS.items():
        named, variant = hm.recipes.get(name), quality_budget.arm_recipe(arm)
        assert variant.index == named.index and variant.exclude_seen == named.exclude_seen
        assert variant.threads == named.threads
        for part, changes in (("model", model_changes), ("training", training_changes)):
            before = dataclasses.asdict(getattr(named, part))
            after = dataclasses.asdict(getattr(variant, part))
            assert {key for key in before if before[key] != after[key]} <= set(changes)
            assert all(after[key] == value for key, value in changes.items())
        assert quality_budget.arm_description(arm) == what

    arm = "best-d128"
    data = write_beauty_lines(tmp_path / "beauty60.txt", 60)
    results = tmp_path / "results"
    argv = ["quality_budget.py", "run", arm, "--data", str(data), "--threads", "1", "--max-steps", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--work", str(tmp_path / "work"), "--results", str(results)])
    quality_budget.main()
    record = json.loads((results / f"{arm}.beauty60.validation.json").read_text())
    assert (record["arm"], record["steps"], record["what"]) == (arm, 1, quality_budget.RECIPE_VARIANTS[arm][3])
    assert (record["model"]["d_model"], record["model"]["d_ff"]) == (128, 512)
    assert record["model"]["repeat_bias"] and record["model"]["chain_prior"] == 50  # the rest of best
    config = json.loads((tmp_path / "work" / f"{arm}.beauty60" / "model" / "config.json").read_text())
    assert config["d_model"] == 128  # the model trained is the wide one, not only the record
