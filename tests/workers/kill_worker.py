"""The worker of the kill test (tests/cli/test_kill.py): runs one ``hf-metaid`` command again and again, each time
killed with SIGKILL at a chosen file-system event of its save, and records what the output folder holds afterwards.

    python tests/workers/kill_worker.py CASES.json RESULTS.json

The kill needs no timing: each run is a forked child with an audit hook (``sys.addaudithook``) that counts the
events writing under the watched folder (files opened for writing, folders made, renames, deletions) and sends
SIGKILL to its own process at the N-th, so the same N always lands at the same point of the save. The parent only
imports (no torch work before forking), and puts the output folder back as it was before each run.

CASES: ``{name: case}``, a case being ``argv`` (the command), ``out`` (its ``--out``, alone in its parent folder,
which is watched), ``previous_argv`` (a command writing the folder that is there before each run, or null for none),
``points`` (how many kill points to draw) and ``seed`` (of the draw). RESULTS, per case: the files of the previous
folder and of the new one (a run left alone, also copied to ``new`` beside the watched folder), the number of events
its save makes, and per kill point: the signal that ended the run, the files at ``out`` (null: absent), and those of
every folder left beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
from pathlib import Path

from hf_metaid.cli import main

WRITING_EVENTS = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"}


# The training time is the one measured figure a save writes (metaid_training.json and the model card): it differs
# between two runs of the same command, so it is blanked before hashing; every other byte counts.
TIMED = {
    "metaid_training.json": re.compile(rb'("train_seconds": )[0-9.eE+-]+'),
    "README.md": re.compile(rb"(- training time: )[0-9.]+"),
}


def files(path: Path) -> dict[str, str] | None:
    """sha256 of every file under ``path``, by relative name; None when ``path`` is absent."""
    if not path.exists():
        return None
    return {str(p.relative_to(path)): _digest(p) for p in sorted(path.rglob("*")) if p.is_file()}


def _digest(path: Path) -> str:
    content = path.read_bytes()
    if path.name in TIMED:
        content = TIMED[path.name].sub(rb"\1<time>", content)
    return hashlib.sha256(content).hexdigest()


def run(argv: list[str], watch: str, kill_at: int | None) -> tuple[int | None, int]:
    """Run the command in a forked child killed at its ``kill_at``-th writing event (never when None); returns
    ``(signal that ended it or None, events counted)``."""
    counted = Path(watch).parent / "events.count"
    pid = os.fork()
    if pid == 0:  # the child: count, kill itself at the chosen event, and never return into the parent's code
        events = 0

        def hook(event: str, args: tuple) -> None:
            nonlocal events
            if event == "open":
                path, mode, flags = args
                writing = (
                    any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR))
                )
            else:
                path, writing = args[0] if args else None, event in WRITING_EVENTS
            if writing and isinstance(path, (str, os.PathLike)) and os.fspath(path).startswith(watch):
                events += 1
                if events == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        sys.addaudithook(hook)
        try:
            code = main(argv)
        finally:
            counted.write_text(str(events))
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if killed is None and os.WEXITSTATUS(status) != 0:
        raise SystemExit(f"{argv[0]} failed with status {os.WEXITSTATUS(status)}")
    events = int(counted.read_text()) if counted.is_file() and killed is None else 0
    counted.unlink(missing_ok=True)
    return killed, events


def reset(out: Path, previous: Path | None) -> None:
    """Remove the output folder and everything left beside it, and put the previous folder back."""
    for leftover in [out, *out.parent.glob(f".{out.name}.*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    if previous is not None:
        shutil.copytree(previous, out)


def kill_case(case: dict) -> dict:
    """One command killed at ``case["points"]`` drawn events of its save (see the module docstring)."""
    out = Path(case["out"])
    watch = str(out.parent) + os.sep
    previous = None
    if case["previous_argv"]:
        run(case["previous_argv"], watch, None)
        previous = out.parent.parent / "previous"
        shutil.copytree(out, previous)
    _, count = run(case["argv"], watch, None)  # left alone: the new folder, and how many events its save makes
    shutil.copytree(out, out.parent.parent / "new")
    result = {"previous": files(previous) if previous else None, "new": files(out), "events": count, "kills": []}
    points = sorted(random.Random(case["seed"]).sample(range(1, count + 1), min(case["points"], count)))
    for point in points:
        reset(out, previous)
        killed, _ = run(case["argv"], watch, point)
        beside = {p.name: files(p) for p in sorted(out.parent.glob(f".{out.name}.*"))}
        result["kills"].append({"point": point, "signal": killed, "out": files(out), "beside": beside})
    return result


if __name__ == "__main__":
    spec_file, result_file = sys.argv[1:]
    cases = json.loads(Path(spec_file).read_text())
    Path(result_file).write_text(json.dumps({name: kill_case(case) for name, case in cases.items()}, indent=1))
