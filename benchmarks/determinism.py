"""Does the same seed give the same model? The demo's training, a few hundred steps, twice per setting, on 2 threads.

Two CPU threads sum some gradients in an order that varies from run to run, so without torch's deterministic
algorithms the same seed gives another loss (and another model) at every run; with them the two runs agree to the
bit. The table also gives each run's seconds, to show what the deterministic algorithms cost.

    python benchmarks/determinism.py --steps 150
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hf-metaid demo` runs; read when torch loads OpenMP
import torch

from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import split_data
from hf_metaid.workflow.training_run import train

RESULTS = Path(__file__).resolve().parent / "results" / "determinism.md"
PROMPT_RECIPE = Recipe.from_name("fast-prompt")  # the prompt-mode recipe this file was measured with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits, names = split_data("beauty")
    vocabulary = build_vocabulary(splits["train"], names, PROMPT_RECIPE.index)
    rows = []
    for deterministic in (False, True):
        runs = []
        for _ in range(2):
            settings = dataclasses.replace(PROMPT_RECIPE.training, max_steps=args.steps, logging_steps=args.steps)
            with tempfile.TemporaryDirectory() as folder:
                arguments = {"full_determinism": deterministic}  # asked for explicitly (the CPU default is on)
                run = train(splits["train"], vocabulary, folder, PROMPT_RECIPE.model, settings, arguments)
            runs.append(run)
        same = runs[0].loss == runs[1].loss  # one process, one thread count: equal means bit for bit
        setting, identical = ("on" if deterministic else "off"), ("yes" if same else "no")
        losses = f"{runs[0].loss:.6f} | {runs[1].loss:.6f}"
        rows.append(f"| {setting} | {losses} | {identical} | {runs[0].seconds:.1f} / {runs[1].seconds:.1f} |")
        print(rows[-1], flush=True)
    report = "\n".join(
        [
            "# Same seed, same model? torch's deterministic algorithms in CPU training",
            "",
            f"Command: `python benchmarks/determinism.py --steps {args.steps} --threads {args.threads}`. The demo's "
            f"model and settings (the recipe `fast-prompt`), {args.steps} steps, twice per setting in one process.",
            "",
            "| deterministic algorithms | loss, run 1 | loss, run 2 | identical | seconds (run 1 / run 2) |",
            "|---|---:|---:|---|---:|",
            *rows,
            "",
            f"Machine: {platform.processor() or platform.machine()}, {args.threads} torch threads, torch "
            f"{torch.__version__}; shared with other jobs, so seconds are indicative only.",
        ]
    )
    RESULTS.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
