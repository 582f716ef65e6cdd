"""Which of the item output's two scoring paths is faster for a batch of the demo's shape, and where to switch.

``MetaIDItemOutput`` scores the rank step of each position against the items of its cluster. Positions sorted by
cluster are scored either one slice of the item rows per cluster (a Python loop over the clusters present) or with
every position's cluster rows gathered, padded to the widest cluster (one batched product). ``SLICE_COST`` in
``hf_metaid.item_output`` sets where the choice flips: the loop wins with few clusters, the gather with thousands of
tiny ones (independent IDs). This script times forward + backward of both paths on Beauty's real item tables (spectral
META IDs at K = 50, 100, 200, 400, and independent IDs) for a batch of the demo's size (64 windows of 20 training
targets, 1,280 positions, d_model 64, targets drawn from the training interactions with a seed), one torch thread,
median of 7 after a warm-up, both paths alternated in each repetition.

Usage: python benchmarks/item_output_paths.py   (writes benchmarks/results/item_output_paths.md)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark_common import cpu_and_cores, write_report
from hf_metaid.indexing import IndependentIndexer, MetaIDIndexer
from hf_metaid.item_output import SLICE_COST, MetaIDItemOutput, slices_are_cheaper
from hf_metaid.workflow.splitting import split_data

HERE = Path(__file__).resolve().parent
TABLE = HERE / "results" / "item_output_paths.md"
POSITIONS, D_MODEL, REPEATS = 1280, 64, 7


def item_mask(vocabulary) -> torch.Tensor:
    """The (clusters, ranks) table of items, as the model holds it."""
    codes = np.asarray(vocabulary.item_codes)
    mask = torch.zeros(vocabulary.num_clusters, int(codes[:, 1].max()) + 1, dtype=torch.uint8)
    mask[codes[:, 0], codes[:, 1]] = 1
    return mask


def time_path(module: MetaIDItemOutput, path: str, batch: tuple) -> float:
    """Seconds of one forward + backward of ``path`` (``_sliced_scores`` or ``_gathered_scores``)."""
    states, clusters, per_group, slots, valid = batch
    module.zero_grad()
    started = time.perf_counter()
    if path == "sliced":
        scores = module._sliced_scores(states, per_group, slots, valid)
    else:
        scores = module._gathered_scores(states, clusters, slots, valid)
    scores.square().sum().backward()
    return time.perf_counter() - started


def measure(name: str, vocabulary, targets: np.ndarray) -> str:
    mask = item_mask(vocabulary)
    module = MetaIDItemOutput(int(mask.sum()), D_MODEL)
    torch.nn.init.normal_(module.weight, std=0.02)
    slots, _, valid = module.tables(mask)
    item_cluster = {item: int(code[0]) for item, code in zip(vocabulary.items, vocabulary.item_codes, strict=True)}
    clusters = torch.tensor(sorted(item_cluster[item] for item in targets))  # sorted: the forward's order
    per_group = torch.bincount(clusters, minlength=mask.shape[0]).tolist()
    states = torch.randn(POSITIONS, D_MODEL, generator=torch.Generator().manual_seed(0))
    batch = (states, clusters, per_group, slots, valid)
    seconds = {"sliced": [], "gathered": []}
    for repeat in range(REPEATS + 1):
        for path in ("sliced", "gathered") if repeat % 2 else ("gathered", "sliced"):
            elapsed = time_path(module, path, batch)
            if repeat:  # the first round warms up
                seconds[path].append(elapsed)
    sliced, gathered = (statistics.median(seconds[p]) * 1000 for p in ("sliced", "gathered"))
    present = sum(1 for count in per_group if count)
    chosen = "sliced" if slices_are_cheaper(present, POSITIONS, mask.shape[1]) else "gathered"
    faster = "sliced" if sliced < gathered else "gathered"
    return (
        f"| {name} | {mask.shape[0]:,} | {mask.shape[1]:,} | {present} | {sliced:.1f} | {gathered:.1f} | "
        f"{gathered / sliced:.2f} | {chosen} | {faster} |"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n", 1)[0]).parse_args()
    torch.set_num_threads(1)
    train = split_data("beauty")[0]["train"]
    items = np.asarray(train["item"])
    targets = items[np.random.default_rng(0).choice(len(items), POSITIONS, replace=False)]
    schemes = [(f"META ID, K = {k}", MetaIDIndexer(embedding="spectral", num_clusters=k)) for k in (50, 100, 200, 400)]
    rows = [measure(name, indexer.fit(train), targets) for name, indexer in [*schemes, ("IID", IndependentIndexer())]]
    lines = [
        "# The item output's two scoring paths",
        "",
        f"`python benchmarks/item_output_paths.py` (its docstring has the protocol). Machine: {cpu_and_cores()}, one "
        f"torch thread. Milliseconds of forward + backward for {POSITIONS:,} positions, median of {REPEATS}. "
        f"`SLICE_COST` = {SLICE_COST}: the forward slices while clusters present x {SLICE_COST} ≤ positions x "
        "widest cluster, so the two last columns should agree except near the break-even point.",
        "",
        "| item table | clusters | widest cluster | clusters present | sliced ms | gathered ms | gathered / sliced "
        "| the forward uses | faster |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
        *rows,
    ]
    write_report(TABLE, lines, ["python " + " ".join(["benchmarks/item_output_paths.py", *sys.argv[1:]])])


if __name__ == "__main__":
    main()
