"""benchmarks/sequential_references.py: the data handed to RecTools is the library's leave-one-out split in order, every
user of a split is scored (a user without recommendations is a miss), the budget stops training where it should, the
setting is chosen on validation figures only, and the results file says what ran. The parts that need RecTools run
only where it is installed (the `benchmarks` extra); the rest runs everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def rectools_missing() -> str:
    """Why the RecTools part cannot run here ("" where it can): the script's own check."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from sequential_references import MissingDependency, require_rectools

        require_rectools()
    except MissingDependency as error:
        return f"the `benchmarks` extra is not installed: {error}"
    finally:
        sys.path.remove(str(BENCHMARKS))
    return ""


needs_rectools = pytest.mark.skipif(bool(rectools_missing()), reason=rectools_missing() or "RecTools installed")


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.fixture
def splits(tmp_path):
    from conftest import write_beauty_lines
    from hf_metaid.workflow.splitting import split_data

    return split_data(str(write_beauty_lines(tmp_path / "beauty60.txt", 60)))[0]


def as_dicts(splits):
    return splits["train"].to_dict(), {name: splits[name].to_dict() for name in ("validation", "test")}


# ------------------------------------------------------------------------------------------------ data
def test_interaction_columns_keep_each_history_in_order_with_its_position_as_time():
    from sequential_references import interaction_columns

    columns = interaction_columns(["u1", "u2"], [["a", "b", "c"], ["c", "a"]])
    assert columns == {
        "user_id": ["u1", "u1", "u1", "u2", "u2"],
        "item_id": ["a", "b", "c", "c", "a"],
        "weight": [1.0] * 5,
        "datetime": [0, 1, 2, 0, 1],
    }
    with pytest.raises(ValueError, match="differ in length: 2 against 1"):
        interaction_columns(["u1", "u2"], [["a"]])


def test_training_histories_are_the_validation_histories_whatever_the_row_order(splits):
    from sequential_references import check_alignment, training_histories

    train, others = as_dicts(splits)
    shuffled = {key: list(reversed(values)) for key, values in train.items()}
    users, histories = training_histories(shuffled)
    assert dict(zip(users, histories, strict=True)) == dict(
        zip(others["validation"]["user"], others["validation"]["history"], strict=True)
    )
    check_alignment(shuffled, others)  # the library's split passes


def test_check_alignment_refuses_splits_that_are_not_the_librarys(splits):
    from sequential_references import check_alignment

    train, others = as_dicts(splits)
    dropped = {key: values[1:] for key, values in train.items()}  # the first user's first training item lost
    with pytest.raises(ValueError, match="training rows are not the validation history"):
        check_alignment(dropped, others)
    others["test"]["history"][3] = others["test"]["history"][3][:-1]
    with pytest.raises(ValueError, match="test history is not the validation history"):
        check_alignment(train, others)


def test_ranked_lists_follow_the_rank_and_keep_users_without_recommendations_as_misses():
    from hf_metaid.evaluation.metrics import ranking_metrics
    from sequential_references import ranked_lists

    rows = [("u2", "x", 2), ("u1", "b", 2), ("u1", "a", 1), ("u2", "y", 1), ("u1", "c", 3)]
    lists = ranked_lists(["u1", "u2", "u3"], rows, k=2)
    assert lists == [["a", "b"], ["y", "x"], []]
    metrics = ranking_metrics(lists, ["b", "y", "z"], ks=(2,))
    assert metrics["num_users"] == 3
    assert metrics["hr@2"] == pytest.approx(2 / 3, abs=1e-12)
    with pytest.raises(ValueError, match="user 'u9', who is not in the split"):
        ranked_lists(["u1"], [("u9", "a", 1)], k=2)


# ---------------------------------------------------------------------------------------------- budget
class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_budget_clock_stops_a_run_once_the_budget_is_spent():
    from sequential_references import BudgetClock

    time = FakeTime()
    clock = BudgetClock(60, now=time)
    assert clock.elapsed() == 0 and not clock.spent()
    clock.start()
    time.now += 59.5
    assert not clock.spent()
    clock.start()  # Lightning starts every fit(); the first start counts
    time.now += 0.5
    assert clock.elapsed() == pytest.approx(60.0, abs=1e-9) and clock.spent()


def test_budget_clock_starts_another_epoch_only_if_the_mean_epoch_fits():
    from sequential_references import BudgetClock

    time = FakeTime()
    clock = BudgetClock(100, now=time)
    clock.start()
    assert clock.next_epoch_fits(0)
    time.now += 30  # two epochs of 15 s: a third ends at 45 s
    assert clock.next_epoch_fits(2)
    time.now += 40  # three epochs of ~23.3 s: a fourth would end at 93.3 s
    assert clock.next_epoch_fits(3)
    time.now += 20  # four epochs of 22.5 s: a fifth would end at 112.5 s, past 100
    assert not clock.next_epoch_fits(4)


@pytest.mark.parametrize("budget", [0, -3.5, float("nan")])
def test_budget_clock_refuses_a_bad_budget(budget):
    from sequential_references import BudgetClock

    with pytest.raises(ValueError, match="positive number of seconds"):
        BudgetClock(budget)


def test_budget_minutes_from_the_command_line():
    from sequential_references import budget_minutes, parse_args

    assert budget_minutes("15") == 15.0
    for bad, message in (("soon", "number of minutes, got 'soon'"), ("-5", "positive, got '-5'")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            budget_minutes(bad)
    assert parse_args(["run", "--budget", "30"]).budget == 30.0
    with pytest.raises(SystemExit):
        parse_args(["choose", "--losses", "softmax,hinge"])


# ------------------------------------------------------------------------------------- choice and results
def validation_record(loss, hr, ndcg, model="sasrec"):
    from sequential_references import DEFAULTS

    figures = {"hr@10": hr, "ndcg@10": ndcg, "num_users": 10_000.0}
    return {
        "model": model,
        "setting": {**DEFAULTS, "loss": loss},
        "budget_minutes": 5,
        "epochs": 1.5,
        "train_seconds": 300.5,
        "steps": 260,
        "metrics": {"validation": {"kept": figures, "left out": figures}},
        "machine": "cpu",
        "command": f"python benchmarks/sequential_references.py choose --losses {loss}",
    }


def test_the_setting_is_the_best_validation_arm_of_the_model():
    from sequential_references import chosen_setting

    records = [
        validation_record("softmax", 0.050, 0.030),
        validation_record("gBCE", 0.060, 0.031),
        validation_record("sampled_softmax", 0.060, 0.032),
        validation_record("softmax", 0.090, 0.050, model="bert4rec"),
    ]
    assert chosen_setting(records, "sasrec")["setting"]["loss"] == "sampled_softmax"  # NDCG@10 breaks the tie
    assert chosen_setting(records, "bert4rec")["setting"]["loss"] == "softmax"
    with pytest.raises(ValueError, match="no validation arm of 'sasrec'"):
        chosen_setting(records[3:], "sasrec")
    leaking = validation_record("gBCE", 0.1, 0.1)
    leaking["metrics"]["test"] = leaking["metrics"]["validation"]
    with pytest.raises(ValueError, match="holds test figures"):
        chosen_setting([*records, leaking], "sasrec")


def test_the_results_file_holds_the_choice_the_budget_rows_and_the_long_run(tmp_path):
    from sequential_references import DEFAULTS, table

    root = tmp_path / "results" / "beauty"
    for loss, hr in (("softmax", 0.0412), ("sampled_softmax", 0.0533)):
        path = root / "validation" / f"sasrec-{loss}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(validation_record(loss, hr, 0.02)))
    figures = {"hr@10": 0.0356, "ndcg@10": 0.0189}
    run = {
        **validation_record("sampled_softmax", 0.0533, 0.02),
        "budget_minutes": 15,
        "train_seconds": 901.2,
        "train_cpu_seconds": 450.4,
        "epochs": 4.25,
        "peak_rss_mib": 1500.0,
        "metrics": {"validation": {"left out": figures}, "test": {"kept": figures, "left out": figures}},
    }
    (root / "run").mkdir()
    (root / "run" / "sasrec-15min.json").write_text(json.dumps(run))
    state = {
        "model": "sasrec",
        "setting": {**DEFAULTS, "loss": "sampled_softmax"},
        "epochs": 10,
        "train_seconds": 2000.0,
        "invocations": 2,
        "history": [{"epoch": 5, "train_seconds": 1000.0, "metrics": {"validation": {"left out": figures}}}],
        "best": {"epoch": 5, "hr@10": 0.0356},
        "stopped": None,
        "commands": ["python benchmarks/sequential_references.py converge"],
        "machine": "cpu",
    }
    (root / "converge" / "sasrec").mkdir(parents=True)
    (root / "converge" / "sasrec" / "state.json").write_text(json.dumps(state))
    out = table("beauty", tmp_path / "results", tmp_path / "table.md")
    text = out.read_text()
    assert "| sasrec | softmax, 64 factors" in text and "| 5 | 300 | 260 | 1.50 | 0.0412 / 0.0200 |" in text
    assert "sampled_softmax (256 negatives)" in text
    assert "(0.0533 over 10,000 users) has a binomial standard error of 0.0022" in text  # sqrt(.0533 * .9467 / 1e4)
    assert "| 15 | 901 | 450 | 4.25 | 0.0356 / 0.0189 | 0.0356 / 0.0189 |" in text
    assert "10 epochs in 2000 s of training over 2 invocation(s), unfinished" in text
    assert "shared with other runs" in text
    assert "python benchmarks/sequential_references.py converge" in text


def test_a_long_run_of_an_earlier_format_is_set_aside_with_its_checkpoints_and_a_note(tmp_path):
    from sequential_references import STATE_FORMAT, set_aside_stale_run, table

    folder = tmp_path / "results" / "beauty" / "converge" / "sasrec"
    folder.mkdir(parents=True)
    old = {"epochs": 11, "invocations": 2, "best": {"epoch": 8, "hr@10": 0.0646}, "history": [], "stopped": None}
    (folder / "state.json").write_text(json.dumps(old))
    checkpoints = tmp_path / "work" / "beauty" / "converge" / "sasrec"
    checkpoints.mkdir(parents=True)
    for name in ("last.ckpt", "best.ckpt"):
        (checkpoints / name).write_text(name)
    note = set_aside_stale_run(folder / "state.json", old, checkpoints)
    assert not (folder / "state.json").exists() and json.loads((folder / "state.format1.json").read_text()) == old
    assert not (checkpoints / "last.ckpt").exists()  # the next invocation must not resume from it
    assert (checkpoints / "format1" / "last.ckpt").read_text() == "last.ckpt"
    assert "11 epochs over 2 invocation(s), best validation HR@10 (left out) 0.0646 after 8 epochs" in note
    assert "evaluation mode" in note and "Xavier" in note and note.endswith("started from scratch.")
    current = {**old, "format": STATE_FORMAT}
    assert set_aside_stale_run(folder / "state.format1.json", current, checkpoints) is None  # nothing moved
    with pytest.raises(ValueError, match="does not know"):
        set_aside_stale_run(folder / "state.format1.json", {**old, "format": STATE_FORMAT + 1}, checkpoints)
    from sequential_references import DEFAULTS

    state = {
        **current,
        "notes": [note],
        "model": "sasrec",
        "setting": {**DEFAULTS, "loss": "gBCE"},
        "train_seconds": 0.0,
        "best": None,
        "epochs": 0,
        "commands": [],
        "machine": "cpu",
    }
    (folder / "state.json").write_text(json.dumps(state))
    assert note in table("beauty", tmp_path / "results", tmp_path / "table.md").read_text()


def test_without_rectools_the_script_says_how_to_install_it(monkeypatch):
    import sequential_references

    monkeypatch.setitem(sys.modules, "rectools", None)  # an import of it now fails
    with pytest.raises(sequential_references.MissingDependency, match=r'pip install -e "\.\[benchmarks\]"'):
        sequential_references.require_rectools()
    with pytest.raises(SystemExit, match="needs RecTools"):
        sequential_references.main(["run", "--results", "/nonexistent"])


# ------------------------------------------------------------------------------------------ with RecTools
@needs_rectools
@pytest.mark.slow
def test_choose_run_and_a_resumed_long_run_on_real_data(tmp_path, one_thread):
    import sequential_references as seq
    from conftest import write_beauty_lines

    data = str(write_beauty_lines(tmp_path / "b.txt", 200))
    common = ["--data", data, "--results", str(tmp_path / "res"), "--table", str(tmp_path / "t.md"), "--factors", "16"]
    common += ["--work", str(tmp_path / "work")]
    seq.main(["choose", "--budget", "0.01", "--losses", "sampled_softmax,gBCE", *common])
    chosen = sorted((tmp_path / "res" / "b" / "validation").glob("*.json"))
    assert len(chosen) == 2
    for path in chosen:
        record = json.loads(path.read_text())
        assert set(record["metrics"]) == {"validation"}  # the choice never sees test
        assert record["metrics"]["validation"]["left out"]["num_users"] == 200
    seq.main(["run", "--budget", "0.01", *common])
    run = json.loads(next((tmp_path / "res" / "b" / "run").glob("*.json")).read_text())
    assert run["epochs"] > 0 and run["steps"] >= 1
    for split in ("validation", "test"):
        assert run["metrics"][split]["kept"]["num_users"] == 200
        assert run["metrics"][split]["left out"]["seen@10"] == 0.0  # the history is out of the ranking
    converge = ["converge", "--every", "1", "--patience", "5", "--max-epochs", "3", *common]
    seq.main([*converge, "--allowance", "0.001"])  # one epoch, then the allowance is spent
    state_path = tmp_path / "res" / "b" / "converge" / "sasrec" / "state.json"
    first = json.loads(state_path.read_text())
    assert first["epochs"] == 1 and not first["stopped"]
    (tmp_path / "work").rename(tmp_path / "moved")  # the checkpoints may move between invocations
    converge[converge.index(str(tmp_path / "work"))] = str(tmp_path / "moved")
    seq.main([*converge, "--allowance", "10"])  # resumes at epoch 1, two more fits, stops at the epoch cap
    second = json.loads(state_path.read_text())
    assert second["invocations"] == 2 and second["epochs"] == 3
    assert second["epochs_per_invocation"] == [1, 2]  # the second went on from the checkpoint, not from scratch
    assert [point["epoch"] for point in second["history"]] == [1, 2, 3]
    assert second["stopped"] == "3 epochs reached" and second["test"]["test"]["left out"]["num_users"] == 200
    assert {path.name for path in (tmp_path / "moved" / "b" / "converge" / "sasrec").iterdir()} == {
        "last.ckpt",
        "best.ckpt",
    }  # last.ckpt overwritten: no last-v1.ckpt beside it for a later invocation to miss
    assert not list((tmp_path / "res").rglob("*.ckpt"))  # no weights in the results folder


@needs_rectools
@pytest.mark.slow
def test_a_resumed_long_run_is_the_uninterrupted_one(tmp_path, one_thread):
    """Two invocations (one epoch, then the rest from last.ckpt) give the model and the validation figures of one
    invocation that trains every epoch: the resume keeps the checkpoint's weights, trains in training mode, and
    each epoch draws what it would have drawn without the interruption."""
    import shutil

    import torch

    import sequential_references as seq
    from conftest import write_beauty_lines

    data = str(write_beauty_lines(tmp_path / "b.txt", 200))

    def options(run: str) -> list[str]:
        return ["--data", data, "--results", str(tmp_path / run / "res"), "--work", str(tmp_path / run / "work")]

    table = ["--table", str(tmp_path / "t.md")]
    seq.main(["choose", "--budget", "0.01", "--losses", "gBCE", "--factors", "16", *options("straight"), *table])
    chosen = "res/b/validation"  # both runs train the one setting chosen
    shutil.copytree(tmp_path / "straight" / chosen, tmp_path / "resumed" / chosen)
    converge = ["converge", "--every", "1", "--patience", "5", "--max-epochs", "3", *table]
    seq.main([*converge, "--allowance", "10", *options("straight")])  # the three epochs in one invocation
    seq.main([*converge, "--allowance", "0.001", *options("resumed")])  # one epoch, then the allowance is spent
    seq.main([*converge, "--allowance", "10", "--seed", "7", *options("resumed")])  # epochs 2, 3: the run's seed

    def state(run: str) -> dict:
        return json.loads((tmp_path / run / "res" / "b" / "converge" / "sasrec" / "state.json").read_text())

    straight, resumed = state("straight"), state("resumed")
    assert straight["epochs_per_invocation"] == [3] and resumed["epochs_per_invocation"] == [1, 2]
    assert straight["format"] == resumed["format"] == seq.STATE_FORMAT and resumed["notes"] == []
    for one, other in zip(straight["history"], resumed["history"], strict=True):
        assert one["epoch"] == other["epoch"]
        for protocol in ("kept", "left out"):
            for name, value in one["metrics"]["validation"][protocol].items():
                assert other["metrics"]["validation"][protocol][name] == pytest.approx(value, abs=1e-9), name

    def weights(run: str) -> dict:
        path = tmp_path / run / "work" / "b" / "converge" / "sasrec" / "last.ckpt"
        return torch.load(path, weights_only=False)["state_dict"]

    one, other = weights("straight"), weights("resumed")
    assert one.keys() == other.keys()
    for name, tensor in one.items():
        assert torch.allclose(tensor, other[name], rtol=0, atol=1e-6), name  # one thread on the CPU: equal


def test_the_benchmarks_extra_names_the_tested_rectools_range_and_stays_out_of_test():
    import configparser

    from sequential_references import INSTALL_HINT

    setup = configparser.ConfigParser()
    setup.read(BENCHMARKS.parent / "setup.cfg")
    extras = setup["options.extras_require"]
    benchmarks = [line.strip() for line in extras["benchmarks"].strip().splitlines()]
    assert 'rectools[torch]>=0.19,<0.20; python_version >= "3.13"' in benchmarks
    assert "rectools[torch] >=0.19,<0.20" in INSTALL_HINT  # the error names the range the extra holds
    assert any(line.startswith("pandas>=") and line.endswith(",<3") for line in benchmarks)
    assert not any("rectools" in line or "lightning" in line for line in extras["test"].splitlines())
