"""benchmarks/trainer_loop.py and benchmarks/train_memory.py: the plain loop trains on the Trainer's batches with
its loss, and the memory curve's step rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_beauty_lines

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_plain_loop_trains_on_the_trainers_batches_to_the_same_loss(tmp_path):
    """Same initial weights, same batches in the same order, same loss: the two arms' mean losses agree, so the
    ratio compares the Trainer's own cost and nothing else."""
    import trainer_loop

    data = write_beauty_lines(tmp_path / "beauty60.txt", 60)
    out = tmp_path / "loop.md"
    trainer_loop.main(["--data", str(data), "--steps", "3", "--warmup", "1", "--repeats", "2", "--out", str(out)])
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| ") and "arm" not in line]
    assert [row[0] for row in rows] == ["| Trainer", "| plain loop"]
    trainer_loss, plain_loss = (float(row[-1].rstrip(" |")) for row in rows)
    assert plain_loss == pytest.approx(trainer_loss, abs=1e-4)
    assert "Trainer / plain loop" in out.read_text()


@pytest.mark.usefixtures("one_thread")
def test_the_plain_loops_model_has_the_training_runs_chain_counts(tiny):
    import trainer_loop
    from hf_metaid.workflow import recipes

    split, tokenizer, _ = tiny
    model = trainer_loop.plain_model(recipes.get("fast"), tokenizer, split["train"])
    users = len(set(split["train"]["user"]))
    assert int(model.metaid_chain_prior.counts.sum()) == split["train"].num_rows - users


def test_the_memory_curves_step_rate_leaves_out_the_first_steps():
    import train_memory

    # (step, resident bytes, wall seconds, CPU seconds): 10 steps/s by the wall clock after step 100, 20 by CPU time
    curve = [(0, 1, 0.0, 0.0), (50, 1, 30.0, 3.0), (100, 1, 40.0, 5.0), (200, 1, 50.0, 10.0), (300, 1, 60.0, 15.0)]
    assert train_memory.steady_rate(curve, skip=100) == pytest.approx(10.0)
    assert train_memory.steady_rate(curve, skip=100, clock=3) == pytest.approx(20.0)
    assert train_memory._marks(900) == [0, 300, 600, 900]
