"""benchmarks/budget_comparison.py: each budget sets the META ID arm chosen on validation beside the references
trained for the same minutes, the chain and the converged SASRec, from the results files alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SETTING = {
    "loss": "gBCE",
    "n_negatives": 256,
    "n_factors": 64,
    "n_blocks": 2,
    "session_max_len": 50,
    "lr": 0.001,
    "batch_size": 128,
}


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def figures(hr: float) -> dict:
    return {"hr@10": hr, "ndcg@10": hr / 2, "num_users": 1000.0}


def arm(name: str, split: str, seconds: float, hr: float, data: str = "beauty") -> dict:
    return {
        "arm": name,
        "data": data,
        "split": split,
        "train_seconds": seconds,
        "train_threads": 1,
        "epochs": 4.0,
        "metrics": {"kept": figures(hr), "left out": figures(hr + 0.001)},
    }


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def reference(model: str, minutes: float, hr: float) -> dict:
    return {
        "model": model,
        "budget_minutes": minutes,
        "setting": SETTING,
        "train_seconds": 60.0 * minutes,
        "threads": 1,
        "epochs": minutes / 10,
        "metrics": {"test": {"kept": figures(hr), "left out": figures(hr + 0.002)}},
    }


@pytest.fixture()
def sources(tmp_path):
    sequential = tmp_path / "sequential"
    write(sequential / "beauty/run/sasrec-15min.json", reference("sasrec", 15.0, 0.0111))
    write(sequential / "beauty/run/bert4rec-15min.json", reference("bert4rec", 15.0, 0.0222))
    write(sequential / "beauty/run/sasrec-60min.json", reference("sasrec", 60.0, 0.0333))
    history = [{"epoch": epoch, "train_seconds": 100.0 * epoch} for epoch in (2, 4, 6)]
    finished = {"model": "sasrec", "setting": SETTING, "stopped": "no better", "epochs": 6, "train_seconds": 600.0}
    test = {"test": {"kept": figures(0.0444), "left out": figures(0.0455)}}
    write(
        sequential / "beauty/converge/sasrec/state.json",
        finished | {"best": {"epoch": 4}, "history": history, "test": test},
    )
    unfinished = {**finished, "model": "bert4rec", "stopped": None, "best": {"epoch": 2}, "history": history}
    write(sequential / "beauty/converge/bert4rec/state.json", unfinished)  # no test yet: not a row
    chain = tmp_path / "references.json"
    test_figures = {"kept": figures(0.0661), "left out": figures(0.0670)}
    write(chain, {"metrics": {"item Markov chain": {"test": test_figures, "validation": test_figures}}})
    return {"sequential": sequential, "chain": chain}


def test_each_budget_sets_the_chosen_arm_beside_the_references_of_its_minutes(sources):
    import budget_comparison

    records = [
        arm("quick", "validation", 500, 0.05),
        arm("quick", "test", 500, 0.04),
        arm("slow", "validation", 3000, 0.09),
        arm("slow", "test", 3000, 0.01),  # a poor test figure must not change the choice
        arm("untested", "validation", 100, 0.5),  # no test result: not a candidate
        arm("other-data", "validation", 100, 0.6, data="markov"),
    ]
    lines = budget_comparison.comparison_lines(records, (15, 30, 60), **sources)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| training budget")]
    models = [row.split(" | ")[:2] for row in rows]
    assert models[0] == ["| none", "the item Markov chain, counted on the training split"]
    assert rows[0].endswith("| 0.0661 / 0.0331 | 0.0670 / 0.0335 |")
    assert models[1] == ["| 15 minutes", "META ID `quick`, chosen on validation HR@10 under both protocols"]
    assert [m[1].split(" (")[0] for m in models[2:4]] == ["SASRec", "BERT4Rec"]  # SASRec first, whatever the files
    assert rows[2].endswith("| 0.0111 / 0.0056 | 0.0131 / 0.0066 |") and "900 s, 1 thread" in rows[2]
    assert models[4][1].startswith("META ID `quick`") and models[5][1] == "SASRec, BERT4Rec: not run at this budget"
    assert models[6][1].startswith("META ID `slow`") and rows[6].endswith("| 0.0100 / 0.0050 | 0.0110 / 0.0055 |")
    assert models[7][1].startswith("SASRec (RecTools)") and "3,600 s" in rows[7]
    assert models[8][0] == "| until validation stops improving" and len(rows) == 9  # the unfinished run is left out
    assert "400 s to that epoch, 1 thread (6 epochs, 600 s in all) | 4 | 0.0444 / 0.0222 | 0.0455 / 0.0227 |" in rows[8]
    assert "over 1,000 users has a binomial standard error of 0.0086" in lines[0]


def test_each_protocol_names_its_own_arm_and_a_budget_without_one_says_so(sources):
    import budget_comparison

    keeps, leaves = arm("keeps", "validation", 100, 0.09), arm("leaves", "validation", 100, 0.08)
    leaves["metrics"]["left out"]["hr@10"] = 0.095
    records = [keeps, arm("keeps", "test", 100, 0.06), leaves, arm("leaves", "test", 100, 0.05)]
    assert [budget_comparison.chosen_arm(records, 15, p) for p in ("kept", "left out")] == ["keeps", "leaves"]
    rows = budget_comparison.metaid_rows(records, 15)
    assert "`keeps`, chosen on validation HR@10 with the history kept" in rows[0]
    assert "`leaves`, chosen on validation HR@10 with the history left out" in rows[1]
    assert budget_comparison.metaid_rows(records, 1) == [
        "| 1 minutes | META ID: no arm with a test result trained within it | | | | |"
    ]
    assert budget_comparison.chain_row(sources["chain"].with_name("absent.json")) == []


def test_the_file_is_written_with_the_commands_that_regenerate_its_sources(sources, tmp_path):
    import budget_comparison

    records = [arm("quick", "validation", 500, 0.05), arm("quick", "test", 500, 0.04)]
    lines = budget_comparison.comparison_lines(records, (15,), **sources)
    path = budget_comparison.write(lines, tmp_path / "out" / "budget_comparison.md")
    text = path.read_text()
    assert text.startswith("# The recipes against the references at each training budget")
    assert "    python benchmarks/sequential_references.py run --model sasrec|bert4rec --budget 15|30|60" in text
    assert "META ID `quick`" in text
