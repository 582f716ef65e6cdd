"""The demo's training run through the Trainer against a plain PyTorch loop: steps per second, same model, same batches.

Why: whatever the Trainer, the pipeline's callbacks and logging add per step is paid 16 epochs long; the target is a
Trainer run at ≥ 0.8 of the plain loop's rate. Both arms train the named recipe (``--recipe``, ``fast`` by default)
on Beauty from the same initial weights (the recipe's seed):

- ``Trainer``: :func:`hf_metaid.workflow.training_run.train` with ``max_steps = --warmup + --steps``, as
  ``hf-metaid train`` runs it (its arguments, callbacks, logging, progress bar off);
- ``plain loop``: the same model built afresh, a plain ``DataLoader`` over the same examples with the same collator
  and sampler (``LengthGroupedSampler`` given the lengths as a list), seeded as the Trainer seeds, so the same
  batches in the same order (the mean losses agree); a loop of forward (the model's own loss, under the same
  autocast as the Trainer's), backward, gradient clipping to 1.0, ``torch.optim.AdamW`` (the Trainer's settings) and
  the linear schedule.

Beauty's 23,692 training windows make 371 batches of 64, so the default 20 + 400 steps cross an epoch start, where
the sampler orders the next epoch. Each arm times the steps after ``--warmup`` by the wall clock and by the process's
CPU time (a callback's clock at each step end for the Trainer, the loop's own for the plain loop); the arms alternate
per repetition (order rotated) in one process, one torch thread; the table gives medians and the median of the
per-repetition ratios. ``--profile FILE`` also writes a cProfile of one Trainer run.

Usage: ``python benchmarks/trainer_loop.py [--steps 400 --warmup 20 --repeats 3]`` (writes
``results/trainer_loop.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import os
import pstats
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from transformers import TrainerCallback, get_linear_schedule_with_warmup, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from benchmark_common import machine, write_report
from hf_metaid.workflow.build import build_model
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import split_data
from hf_metaid.workflow.training_run import set_chain_counts, train

RESULTS = Path(__file__).resolve().parent / "results" / "trainer_loop.md"


class StepClock(TrainerCallback):
    """The wall clock and the process's CPU time at the end of every step."""

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append((time.perf_counter(), time.process_time()))


def trainer_arm(
    recipe: Recipe, splits, vocabulary, warmup: int, steps: int, scratch: str
) -> tuple[float, float, float]:
    """Steps per wall second and per CPU second of the pipeline's Trainer run after ``warmup`` steps, and its mean
    loss over all steps."""
    clock = StepClock()
    settings = dataclasses.replace(
        recipe.training, max_steps=warmup + steps, logging_steps=recipe.training.logging_steps
    )
    run = train(splits["train"], vocabulary, scratch, recipe.model, settings, callbacks=[clock])
    (wall, cpu), (wall_end, cpu_end) = clock.times[warmup - 1], clock.times[-1]
    return steps / (wall_end - wall), steps / (cpu_end - cpu), run.loss


def plain_model(recipe: Recipe, tokenizer, train_split):
    """The plain loop's model: the Trainer's initial weights (same builder, same seed) and, where the recipe has the
    chain prior, the chain counts the training run gives the Trainer's model."""
    model = build_model(tokenizer, recipe.model, seed=recipe.training.seed)
    if model.config.metaid_chain_prior:
        set_chain_counts(model, tokenizer, train_split)
    return model


def plain_arm(recipe: Recipe, splits, vocabulary, warmup: int, steps: int, scratch: str) -> tuple[float, float, float]:
    """Steps per wall second and per CPU second of a plain loop over the same Trainer's batches, same initial
    weights, and its mean loss."""
    settings = dataclasses.replace(recipe.training, max_steps=1)
    shell = train(splits["train"], vocabulary, scratch, recipe.model, settings)  # the tokenizer, dataset, arguments
    args, dataset = shell.trainer.args, shell.trainer.train_dataset
    if args.train_sampling_strategy == "group_by_length":
        sampler = LengthGroupedSampler(args.train_batch_size, lengths=dataset[args.length_column_name][:])
    else:
        sampler = torch.utils.data.RandomSampler(dataset)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.train_batch_size, sampler=sampler, collate_fn=shell.trainer.data_collator
    )
    model = plain_model(recipe, shell.tokenizer, splits["train"])
    model.train()
    set_seed(args.seed)  # the sampler's and dropout's draws start where the Trainer's do
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=0.0,
    )
    total = warmup + steps
    schedule = get_linear_schedule_with_warmup(optimizer, args.get_warmup_steps(total), total)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    losses, started, done = [], None, 0
    while done < total:
        for batch in loader:
            with autocast():
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            done += 1
            if done == warmup:
                started = (time.perf_counter(), time.process_time())
            if done == total:
                break
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    return steps / wall, steps / cpu, float(torch.stack(losses).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipe", default="fast", help="a named recipe (hf_metaid.workflow.recipes)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="beauty", help="'beauty' or any file load_interactions reads")
    parser.add_argument("--profile", type=Path, help="also write a cProfile of one Trainer run (top functions)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        parser.error(f"--warmup and --steps must be ≥ 1, got {args.warmup} and {args.steps}")
    torch.set_num_threads(args.threads)
    host = machine(f", {args.threads} torch thread(s)")
    recipe = Recipe.from_name(args.recipe)
    splits, names = split_data(args.data)
    vocabulary = build_vocabulary(splits["train"], names, recipe.index)
    arms = {"Trainer": trainer_arm, "plain loop": plain_arm}
    rates: dict[str, list[float]] = {name: [] for name in arms}
    cpu_rates: dict[str, list[float]] = {name: [] for name in arms}
    losses: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as scratch:
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(trainer_arm, recipe, splits, vocabulary, args.warmup, args.steps, f"{scratch}/profile")
            with args.profile.open("w") as sink:
                pstats.Stats(profiler, stream=sink).sort_stats("cumulative").print_stats(60)
                pstats.Stats(profiler, stream=sink).sort_stats("tottime").print_stats(40)
        order = list(arms)
        for repeat in range(args.repeats):
            for name in order[repeat % 2 :] + order[: repeat % 2]:
                work = f"{scratch}/{name}{repeat}"
                rate, cpu_rate, loss = arms[name](recipe, splits, vocabulary, args.warmup, args.steps, work)
                rates[name].append(rate)
                cpu_rates[name].append(cpu_rate)
                losses[name].append(loss)
                print(
                    f"{name}, repeat {repeat + 1}: {rate:.2f} steps/s, {cpu_rate:.2f} per CPU second, mean loss "
                    f"{loss:.4f}",
                    flush=True,
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB on Linux
    ratio = statistics.median(a / b for a, b in zip(rates["Trainer"], rates["plain loop"], strict=True))
    cpu_ratio = statistics.median(a / b for a, b in zip(cpu_rates["Trainer"], cpu_rates["plain loop"], strict=True))
    lines = [
        "# The demo's training: the Trainer against a plain PyTorch loop",
        "",
        f"Machine: {host}; peak resident memory of the process {peak:.2f} GB. The recipe `{args.recipe}` on "
        f"{args.data}, "
        f"{args.steps} timed steps after {args.warmup} warm-up steps per run, {args.repeats} repetitions, the arms "
        "alternating (order rotated per repetition) in one process.",
        "",
        "| arm | steps/s per repetition | median steps/s | steps per CPU second per repetition | median | "
        "median mean loss |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name in arms:
        each = ", ".join(f"{rate:.2f}" for rate in rates[name])
        each_cpu = ", ".join(f"{rate:.2f}" for rate in cpu_rates[name])
        lines.append(
            f"| {name} | {each} | {statistics.median(rates[name]):.2f} | {each_cpu} | "
            f"{statistics.median(cpu_rates[name]):.2f} | {statistics.median(losses[name]):.4f} |"
        )
    lines += [
        "",
        f"Trainer / plain loop (median of the per-repetition ratios): **{ratio:.3f}** by the wall clock, "
        f"**{cpu_ratio:.3f}** by CPU time (target ≥ 0.8; on a shared machine the CPU-time ratio is the steadier one).",
    ]
    command = "python benchmarks/trainer_loop.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_report(args.out, lines, [command.strip()])


if __name__ == "__main__":
    main()
