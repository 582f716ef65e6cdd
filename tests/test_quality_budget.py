"""benchmarks/quality_budget.py: the best arm per training budget is chosen on validation, never on test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def record(arm: str, split: str, seconds: float, hr: float) -> dict:
    metrics = {"hr@5": hr / 2, "hr@10": hr, "ndcg@5": hr / 4, "ndcg@10": hr / 3, "seconds": 1.0}
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
        "metrics": {"kept": metrics, "left out": {**metrics, "hr@10": hr + 0.001}},
    }


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
    chosen = [row.split(" | ")[1] for row in rows[2:]]
    assert chosen == ["(no arm with a test result trained within it)", "fast", "mid", "mid"]
    assert "| 0.0810 |" in rows[4] and "| 0.0110 |" in rows[4]  # validation left out, then test left out
    for item in records:
        (tmp_path / f"{item['arm']}.{item['data']}.{item['split']}.json").write_text(json.dumps(item))
    quality_budget.table(tmp_path, tmp_path / "quality_budget.md")
    text = (tmp_path / "quality_budget.md").read_text()
    assert "## The best recipe per training budget" in text and "| 60 minutes | mid |" in text
    assert text.count("| fast | beauty |") == 2  # every arm is listed below, validation and test
