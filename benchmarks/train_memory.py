"""Resident memory and step rate of the demo's training over its steps, under the set-ups that decide both.

Why: on a CPU with native bf16 (AVX-512 + AMX) the demo's training grew its resident memory step after step where
a CPU without it stayed near 1 GB. Two things differ there: ``bf16="auto"`` turns bf16 autocast on (its matrix products
run in oneDNN), and oneDNN keeps a compiled kernel per tensor shape (up to ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1,024
by default), while the demo's batches vary in shape (decoder windows of 1-20 items under length-grouped sampling,
a varying number of distinct candidates in the all-items objective, varying cluster spans in the item output).
What it decided: float32 trained faster per CPU second and held the memory flat, a bounded cache did neither for
bf16, so ``bf16="auto"`` is float32 on a CPU (``results/train_memory.md``).

Each set-up trains a named recipe (``--recipe``, ``fast`` by default) for ``--steps`` steps on Beauty in its own
process (one torch thread, ``OMP_WAIT_POLICY=PASSIVE`` as ``hf-metaid`` sets it), sampling the resident set
(``/proc/self/statm``) every ``--every`` steps from a ``TrainerCallback``; the set-ups take turns per repetition,
and the table gives medians over repetitions. Set-ups (``--setups``, comma-separated):

- ``default``: the training as the library runs it (``bf16="auto"``; the environment's own
  ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` removed);
- ``bf16``: bf16 autocast forced on (``TrainingSettings.bf16="on"``), oneDNN's default cache;
- ``bf16-cache8``, ``bf16-cache64``: the same with ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=8`` or ``64``;
- ``fp32``: bf16 off (float32 throughout);
- ``fp32-cache8``: float32 with ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=8``.

Usage: ``python benchmarks/train_memory.py [--steps 400 --every 25 --repeats 1 --setups default,bf16,fp32]``
(writes ``results/train_memory.md`` and the per-step curves to ``results/train_memory.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark_common import machine, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "train_memory.md"

# set-up -> (TrainingSettings.bf16, ONEDNN_PRIMITIVE_CACHE_CAPACITY or None for oneDNN's default)
SETUPS = {
    "default": (None, None),
    "bf16": ("on", None),
    "bf16-cache8": ("on", "8"),
    "bf16-cache64": ("on", "64"),
    "fp32": ("off", None),
    "fp32-cache8": ("off", "8"),
}

WORKER = """
import dataclasses, json, os, resource, sys, time
import torch
from transformers import TrainerCallback
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import split_data
from hf_metaid.workflow.training_run import train

steps, every, recipe = int(sys.argv[1]), int(sys.argv[2]), Recipe.from_name(sys.argv[3])
bf16, work = sys.argv[4], sys.argv[5]
torch.set_num_threads(1)
page = os.sysconf("SC_PAGE_SIZE")

def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * page

class Sampler(TrainerCallback):
    def __init__(self):
        self.curve, self.started = [], None
    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.curve.append((0, rss(), 0.0, time.process_time()))
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % every == 0 or state.global_step == steps:
            self.curve.append((state.global_step, rss(), time.perf_counter() - self.started, time.process_time()))

splits, names = split_data("beauty")
vocabulary = build_vocabulary(splits["train"], names, recipe.index)
settings = dataclasses.replace(recipe.training, max_steps=steps, logging_steps=steps)
if bf16 != "-":
    settings = dataclasses.replace(settings, bf16=bf16)
sampler = Sampler()
run = train(splits["train"], vocabulary, work, recipe.model, settings, callbacks=[sampler])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"curve": sampler.curve, "seconds": run.seconds, "peak": peak, "bf16": bool(run.trainer.args.bf16),
                  "loss": run.loss}))
"""


def run_setup(setup: str, steps: int, every: int, recipe: str, work: str) -> dict:
    """One training run of ``setup`` in a fresh process: its RSS curve, training seconds, peak RSS and loss."""
    bf16, cache = SETUPS[setup]
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    environment.pop("ONEDNN_PRIMITIVE_CACHE_CAPACITY", None)
    if cache is not None:
        environment["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = cache
    command = [sys.executable, "-c", WORKER, str(steps), str(every), recipe, bf16 or "-", work]
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{setup} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady_rate(curve: list, skip: int, clock: int = 2) -> float:
    """Steps per second after the first ``skip`` steps (compilation and first-shape costs left out), by the wall
    clock (``clock=2``) or by the process's CPU time (``clock=3``, less moved by other work on a shared machine)."""
    start = next(point for point in curve if point[0] >= skip)
    end = curve[-1]
    return (end[0] - start[0]) / (end[clock] - start[clock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", default="fast", help="a named recipe (hf_metaid.workflow.recipes)")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {', '.join(SETUPS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    setups = args.setups.split(",")
    unknown = [setup for setup in setups if setup not in SETUPS]
    if unknown:
        parser.error(f"unknown set-up(s) {unknown}; known: {', '.join(SETUPS)}")
    if args.every < 1 or args.steps < args.every:
        parser.error(f"--every must be ≥ 1 and ≤ --steps, got --every {args.every} --steps {args.steps}")
    runs: dict[str, list[dict]] = {setup: [] for setup in setups}
    skip = min(100, args.steps // 2)
    host = machine(", one torch thread")
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for setup in setups[repeat % len(setups) :] + setups[: repeat % len(setups)]:
                found = run_setup(setup, args.steps, args.every, args.recipe, f"{scratch}/{setup}-{repeat}")
                runs[setup].append(found)
                curve = " ".join(f"{point[0]}:{point[1] / 1e9:.2f}" for point in found["curve"])
                print(
                    f"{setup}, repeat {repeat + 1}: peak {found['peak'] / 1e9:.2f} GB, {found['seconds']:.1f} s, "
                    f"{steady_rate(found['curve'], skip, 3):.2f} steps per CPU second; RSS GB by step {curve}",
                    flush=True,
                )
    lines = [
        "# Resident memory and step rate of the demo's training",
        "",
        f"Machine: {host}. The recipe `{args.recipe}` on Beauty, {args.steps} training steps per run, each run in its "
        f"own process, the resident set sampled every {args.every} steps; {args.repeats} repetition(s), set-ups "
        "rotated per repetition, medians. The step rates leave out the first "
        f"{skip} steps. Peak is the process's `ru_maxrss` (index, data and training together).",
        "",
        "| set-up | bf16 | oneDNN cache | peak RSS GB | RSS at step "
        + " / ".join(str(step) for step in _marks(args.steps))
        + " (GB) | steps/s (wall) | steps per CPU second | train seconds | mean loss |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for setup in setups:
        found = runs[setup]
        cache = SETUPS[setup][1]
        at = {}
        for step in _marks(args.steps):
            at[step] = statistics.median(next(point[1] for point in run["curve"] if point[0] >= step) for run in found)
        lines.append(
            f"| {setup} | {'on' if found[0]['bf16'] else 'off'} | {cache or 'default (1024)'} | "
            f"{statistics.median(run['peak'] for run in found) / 1e9:.2f} | "
            + " / ".join(f"{at[step] / 1e9:.2f}" for step in at)
            + f" | {statistics.median(steady_rate(run['curve'], skip) for run in found):.2f} | "
            f"{statistics.median(steady_rate(run['curve'], skip, 3) for run in found):.2f} | "
            f"{statistics.median(run['seconds'] for run in found):.1f} | "
            f"{statistics.median(run['loss'] for run in found):.4f} |"
        )
    command = "python benchmarks/train_memory.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    curves = {setup: [run["curve"] for run in found] for setup, found in runs.items()}
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "curves": curves}, indent=1) + "\n")
    write_report(args.out, lines, [command.strip()])


def _marks(steps: int) -> list[int]:
    """The steps the table shows the resident set at: the start, a third, two thirds, the end."""
    return [0, steps // 3, 2 * steps // 3, steps]


if __name__ == "__main__":
    main()
