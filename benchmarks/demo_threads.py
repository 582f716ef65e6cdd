"""Training seconds of the demo's recipe on 1 and on 2 torch threads: the thread count ``hf-metaid demo`` defaults to.

Why: the demo's narrow model (d_model 64, d_ff 256, 1+2 layers, decoder sequences of up to 41 tokens) multiplies
matrices so small that a second OpenMP thread costs more in waiting than it saves. Each set-up runs in its own
process (``OMP_WAIT_POLICY=PASSIVE``, as ``hf-metaid`` sets it) and trains a named recipe (``--recipe``, of
``hf_metaid.workflow.recipes``: ``fast``, the demo's, by default; ``fast-prompt`` for the prompt-mode one) for
``--steps`` steps on Beauty; the set-ups alternate per repetition so that machine noise hits both alike; medians are
reported.

Run on an otherwise idle machine: ``python benchmarks/demo_threads.py [--steps 400 --repeats 2]``
(writes ``results/demo_threads.md``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmark_common import cpu_and_cores, write_report
from hf_metaid.workflow import recipes

RESULTS = Path(__file__).resolve().parent / "results" / "demo_threads.md"

WORKER = """
import dataclasses, sys
import torch
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import split_data
from hf_metaid.workflow.training_run import train

threads, steps, recipe = int(sys.argv[1]), int(sys.argv[2]), Recipe.from_name(sys.argv[3])
torch.set_num_threads(threads)
splits, names = split_data("beauty")
vocabulary = build_vocabulary(splits["train"], names, recipe.index)
settings = dataclasses.replace(recipe.training, max_steps=steps, logging_steps=steps)
run = train(splits["train"], vocabulary, sys.argv[4], recipe.model, settings)
print(run.seconds)
"""


def seconds(threads: int, steps: int, recipe: str, work: str) -> float:
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-c", WORKER, str(threads), str(steps), recipe, work]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", choices=recipes.names(), default=recipes.DEFAULT, help="a named recipe")
    parser.add_argument("--work", default="runs/demo_threads")
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for threads in times:
            times[threads].append(seconds(threads, args.steps, args.recipe, f"{args.work}/{threads}-{repeat}"))
            print(f"{threads} thread(s), repeat {repeat + 1}: {times[threads][-1]:.1f} s", flush=True)
    one = statistics.median(times[1])
    lines = [
        "# Training on 1 and 2 torch threads",
        "",
        f"`python benchmarks/demo_threads.py --steps {args.steps} --repeats {args.repeats} --recipe {args.recipe}`; "
        f"{cpu_and_cores()}; `OMP_WAIT_POLICY=PASSIVE`; the recipe `{args.recipe}`, "
        f"{args.steps} training steps on Beauty per run, each run in its own process; the machine otherwise idle.",
        "",
        "| threads | seconds per run | median | seconds per step | speed vs 1 thread |",
        "|---:|---|---:|---:|---:|",
    ]
    for threads, values in times.items():
        median = statistics.median(values)
        runs = ", ".join(f"{value:.1f}" for value in values)
        lines.append(f"| {threads} | {runs} | {median:.1f} | {median / args.steps:.3f} | {one / median:.2f}x |")
    write_report(RESULTS, lines)


if __name__ == "__main__":
    main()
