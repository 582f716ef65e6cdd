"""A save killed with SIGKILL leaves the previous folder or none, never one that mixes old and new files.

``hf-metaid index`` and ``train`` run in a worker (tests/workers/kill_worker.py) that kills each run at a chosen
file-system event of its final save, drawn with a fixed seed: the same events every time, no timing involved.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import hf_metaid as hm
from conftest import subprocess_env, write_beauty_lines
from hf_metaid.cli import main

WORKER = Path(__file__).resolve().parents[1] / "workers" / "kill_worker.py"
# Kill points drawn per case: every event of the small index saves, a sample of the model saves' 20-40.
POINTS = {"index-new": 8, "index-over-old": 8, "train-over-old": 6, "train-lora-new": 4}
QUICK = ["--max-steps", "1", "--d-model", "32", "--batch-size", "8", "--warmup-steps", "0", "--threads", "1"]


def _case(root: Path, name: str, command: list[str], previous: list[str] | None, points: int) -> dict:
    out = root / name / "watched" / "out"
    out.parent.mkdir(parents=True)
    return {
        "argv": [*command, "--out", str(out), *(["--overwrite"] if previous else [])],
        "previous_argv": None if previous is None else [*previous, "--out", str(out)],
        "out": str(out),
        "points": points,
        "seed": 0,
    }


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Every case's results from one worker run (its imports are paid once)."""
    root = tmp_path_factory.mktemp("kill")
    data = write_beauty_lines(root / "slice.txt")
    index = ["index", "--data", str(data), "--num-clusters", "4", "--embedding", "spectral"]
    assert main([*index, "--out", str(root / "vocab")]) == 0
    train = ["train", "--data", str(data), "--vocab", str(root / "vocab"), *QUICK]
    runs = {
        "index-new": (index, None),
        "index-over-old": (index, [*index, "--seed", "1"]),
        "train-over-old": (train, [*train, "--seed", "1", "--d-model", "16"]),  # other weights and config
        "train-lora-new": ([*train, "--lora"], None),
    }
    cases = {name: _case(root, name, *run, points=POINTS[name]) for name, run in runs.items()}
    (root / "cases.json").write_text(json.dumps(cases))
    worker = [sys.executable, str(WORKER), str(root / "cases.json"), str(root / "results.json")]
    subprocess.run(worker, check=True, env=subprocess_env())
    results = json.loads((root / "results.json").read_text())
    return {name: (Path(case["out"]), results[name]) for name, case in cases.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", POINTS)
def test_a_killed_save_leaves_the_old_folder_or_none(killed, name):
    out, result = killed[name]
    assert len(result["kills"]) == min(POINTS[name], result["events"])
    states = set()
    for kill in result["kills"]:
        assert kill["signal"] == signal.SIGKILL, kill  # the kill landed inside the save
        assert all(n.startswith((f".{out.name}.partial-", f".{out.name}.replaced-")) for n in kill["beside"]), kill
        if kill["out"] is None:
            states.add("none")
            if result["previous"] is not None:  # between the two renames: the old folder is aside, whole
                assert result["previous"] in kill["beside"].values(), kill
        else:
            assert kill["out"] in (result["previous"], result["new"]), kill  # never a mix
            states.add("old" if kill["out"] == result["previous"] else "new")
    assert states & {"none", "old"}, "no kill landed before the new folder was in place"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["train-over-old", "train-lora-new"])
def test_the_new_folder_of_an_uninterrupted_save_loads(killed, name):
    out, result = killed[name]
    new = out.parent.parent / "new"
    assert {str(p.relative_to(new)) for p in new.rglob("*") if p.is_file()} == set(result["new"])
    model, tokenizer = hm.load_for_inference(new)
    assert len(model.recommend(tokenizer, history=tokenizer.entity_vocabulary.items[:2], k=3)) == 3
