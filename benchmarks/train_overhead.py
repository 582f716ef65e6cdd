"""What META ID's additions cost in training: samples per second against a plain T5 of the same size.

Two recipes, each on the same batches of Beauty training prompts (the Trainer's own data loader, the recipe's batch
size), one optimizer step per batch (forward, backward, AdamW):

- the prompt recipe (``fast-prompt``: the user and the history in the encoder, where the augmentation F acts): a
  plain ``T5ForConditionalGeneration`` of the same sizes and vocabulary, the META ID model, and the same META ID
  model with F skipped (``augmentation_disabled``): F's overhead is the last two side by side (target ≤ 3%);
- the decoder recipe (``decoder-k100``, the demo's ``fast`` before its K = 200 and the all-items objective: the history
  in the decoder, the items' own input and output vectors; F has no ID token to act on there): a plain T5 of the same
  sizes against the META ID model, and a copy of it with the repeat bias (``set_repeat_bias``): its overhead is the
  last two side by side.

The variants of a recipe take turns (rotated every repetition) over the same batches, so machine noise hits them
alike; each repetition times ``--steps`` steps after ``--warmup``; medians over repetitions, and the median of the
per-repetition ratios. Results: ``results/train_overhead.md``.

Usage: python benchmarks/train_overhead.py [--steps 20 --repeats 5 --threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from transformers import T5Config, T5ForConditionalGeneration

from benchmark_common import cpu_and_cores, write_report
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import split_data
from hf_metaid.workflow.training_run import train

RESULTS = Path(__file__).resolve().parent / "results" / "train_overhead.md"


def plain_twin(model) -> T5ForConditionalGeneration:
    """A plain T5 with the META ID model's sizes and embedding rows, seeded."""
    config = model.config
    fields = ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "dropout_rate")
    twin = T5Config(
        vocab_size=model.get_input_embeddings().weight.shape[0],
        decoder_start_token_id=config.decoder_start_token_id,
        pad_token_id=config.pad_token_id,
        eos_token_id=config.eos_token_id,
        **{name: getattr(config, name) for name in fields},
    )
    torch.manual_seed(0)
    return T5ForConditionalGeneration(twin)


def recipe_batches(recipe: Recipe, count: int, splits, names) -> tuple[object, list[dict]]:
    """The META ID model of ``recipe`` and ``count`` batches from its Trainer's data loader (one step of the
    pipeline's own training builds both exactly as a real run does)."""
    vocabulary = build_vocabulary(splits["train"], names, recipe.index, scheme="metaid")
    with tempfile.TemporaryDirectory() as scratch:
        run = train(splits["train"], vocabulary, scratch, recipe.model, replace(recipe.training, max_steps=1))
        batches = []
        for batch in run.trainer.get_train_dataloader():
            batches.append({key: value for key, value in batch.items() if isinstance(value, torch.Tensor)})
            if len(batches) == count:
                break
    return run.model, batches


def time_steps(model, optimizer, batches: list[dict], context) -> float:
    """Seconds for one optimizer step per batch."""
    started = time.perf_counter()
    for batch in batches:
        with context():
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def compare(variants: dict[str, tuple[object, object]], batches, warmup: int, steps: int, repeats: int) -> dict:
    """Samples/s of every variant per repetition, the variants rotated per repetition over the same batches."""
    names = list(variants)
    optimizers = {}
    for name in names:
        model, context = variants[name]
        model.train()
        optimizers[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)
        time_steps(model, optimizers[name], batches[:warmup], context)
    timed = batches[warmup : warmup + steps]
    samples = sum(int(batch["input_ids"].shape[0]) for batch in timed)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            model, context = variants[name]
            rates[name].append(samples / time_steps(model, optimizers[name], timed, context))
    return rates


def median_ratio(first: list[float], second: list[float]) -> float:
    """Median over repetitions of first / second (both measured in the same repetition)."""
    return statistics.median(a / b for a, b in zip(first, second, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--data", default="beauty", help="'beauty' or any file load_interactions reads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    splits, names = split_data(args.data)
    rows, overheads = [], {"F": "not measured", "the repeat bias": "not measured"}
    for label, recipe in (
        ("prompt recipe (fast-prompt)", Recipe.from_name("fast-prompt")),
        ("decoder recipe (decoder-k100)", Recipe.from_name("decoder-k100")),
    ):
        model, batches = recipe_batches(recipe, args.warmup + args.steps, splits, names)
        if len(batches) < args.warmup + args.steps:
            parser.error(f"the data give {len(batches)} batches, fewer than --warmup + --steps")
        variants = {"plain T5": (plain_twin(model), contextlib.nullcontext), "META ID": (model, contextlib.nullcontext)}
        if not recipe.model.history_in_decoder:  # F acts where the encoder reads the history
            variants["META ID, F skipped"] = (model, model.encoder.augmentation_disabled)
        else:
            repeating = copy.deepcopy(model)
            repeating.set_repeat_bias()
            variants["META ID, repeat bias"] = (repeating, contextlib.nullcontext)
        rates = compare(variants, batches, args.warmup, args.steps, args.repeats)
        for name, found in rates.items():
            rows.append((label, name, statistics.median(found), median_ratio(found, rates["plain T5"])))
        if "META ID, F skipped" in rates:
            cost = median_ratio(rates["META ID, F skipped"], rates["META ID"]) - 1
            overheads["F"] = f"{100 * cost:+.1f}% time per sample (target ≤ 3%)"
        if "META ID, repeat bias" in rates:
            cost = median_ratio(rates["META ID"], rates["META ID, repeat bias"]) - 1
            overheads["the repeat bias"] = f"{100 * cost:+.1f}% time per sample"
    lines = [
        "# Training cost of META ID's additions against a plain T5 of the same size",
        "",
        f"Machine: {cpu_and_cores()}; torch {torch.__version__}, {args.threads} thread(s); {args.steps} steps per "
        f"timing after {args.warmup} warm-up steps, {args.repeats} repetitions, variants rotated per repetition.",
        "",
        "| recipe | variant | median samples/s | median ratio to plain T5 |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {label} | {name} | {rate:,.0f} | {ratio:.3f} |" for label, name, rate, ratio in rows]
    lines += [
        "",
        f"F's overhead: {overheads['F']} (the median over repetitions of samples/s with F skipped over samples/s "
        "with F, minus 1).",
        "",
        f"The repeat bias's overhead: {overheads['the repeat bias']} (the median over repetitions of samples/s "
        "without it over samples/s with it, minus 1).",
    ]
    command = "python benchmarks/train_overhead.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_report(args.out, lines, [command.strip()])


if __name__ == "__main__":
    main()
