"""How far back the item chain should read: the smoothed chain of the last few items, counting alone.

The model's chain prior (``chain_prior_earlier``) scores each item by sum_k rho^k n(j_k -> i) + a p(i) over the last
item j_0 and the items before it, read as a lift against popularity. This script measures that ranking without a
model: counts from the training split only, every user of the validation split, the history left out of the
ranking, HR@10 / NDCG@10 for each reach (how many items before the last) and decay rho. The pseudo-count a is the
smoothed chain's, chosen on validation by ``count_baselines.choose_pseudo_count``. The reach and decay with the best
validation NDCG@10 are then read once on the test split, beside the last item alone; nothing is chosen on test.

Usage:
    python benchmarks/chain_reach.py                  # Beauty: results/chain_reach.md
    python benchmarks/chain_reach.py --data markov    # any name or file load_interactions reads: chain_reach_STEM.md
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark_common import cpu_and_cores, write_report
from count_baselines import (
    TOP,
    choose_pseudo_count,
    left_out_metrics,
    popularity_shares,
    positional_splits,
    reach_chain_top,
    training_counts,
)

RESULTS = Path(__file__).resolve().parent / "results" / "chain_reach.md"
REACHES = (1, 2, 3, 5)  # items before the last
DECAYS = (0.25, 0.5, 1.0)


def reach_weights(reach: int, decay: float) -> list[float]:
    """1, rho, rho^2, ...: the weight of the last item and of each of the ``reach`` items before it."""
    return [decay**k for k in range(reach + 1)]


def reach_ranker(
    weights: list[float], expected: np.ndarray, by_popularity: np.ndarray, transitions
) -> Callable[[list[int]], list[int]]:
    """history -> its ranked items (deep enough to leave the history out and keep ``TOP``)."""

    def rank(history: list[int]) -> list[int]:
        recent = history[::-1][: len(weights)]
        return reach_chain_top(recent, weights, expected, by_popularity, transitions, TOP + len(history))

    return rank


def scores(ranker: Callable[[list[int]], list[int]], histories: list[list[int]], targets: list[int]) -> dict:
    """HR@10 and NDCG@10 of ``ranker`` with the history left out."""
    return left_out_metrics([ranker(history) for history in histories], histories, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="beauty", help="a name or interaction file load_interactions reads")
    parser.add_argument("--results", type=Path, help="where to write (default: results/chain_reach[_STEM].md)")
    args = parser.parse_args()
    stem = "" if args.data == "beauty" else f"_{Path(args.data).stem}"
    out = args.results or RESULTS.with_name(f"chain_reach{stem}.md")
    started = time.perf_counter()
    _, names, histories, targets = positional_splits(args.data)
    popularity, transitions = training_counts(histories["validation"], len(names["items"]))  # the training sequences
    shares, by_popularity = popularity_shares(popularity), np.argsort(-popularity, kind="stable")

    def last_alone(a: float) -> Callable[[int], list[int]]:
        rank = reach_ranker([1.0], a * shares, by_popularity, transitions)
        return lambda last: rank([last])

    pseudo_count, _ = choose_pseudo_count(last_alone, histories["validation"], targets["validation"])
    expected = pseudo_count * shares
    settings = [(0, 1.0), *itertools.product(REACHES, DECAYS)]
    validation = {}
    for reach, decay in settings:
        ranker = reach_ranker(reach_weights(reach, decay), expected, by_popularity, transitions)
        validation[reach, decay] = scores(ranker, histories["validation"], targets["validation"])
        print(reach, decay, validation[reach, decay], flush=True)
    chosen = max(settings, key=lambda s: (validation[s][f"ndcg@{TOP}"], -s[0], -s[1]))
    test = {
        setting: scores(
            reach_ranker(reach_weights(*setting), expected, by_popularity, transitions),
            histories["test"],
            targets["test"],
        )
        for setting in dict.fromkeys([(0, 1.0), chosen])
    }

    def cell(metrics: dict) -> str:
        return f"{metrics[f'hr@{TOP}']:.4f} / {metrics[f'ndcg@{TOP}']:.4f}"

    rows = [
        f"| {reach} | {'—' if not reach else f'{decay:g}'} | {cell(validation[reach, decay])} | "
        f"{cell(test[reach, decay]) if (reach, decay) in test else ''} |"
        for reach, decay in settings
    ]
    write_report(
        out,
        [
            f"# How far back the item chain reads: {args.data}",
            "",
            f"The smoothed chain (pseudo-count a = {pseudo_count:g}, chosen on validation) of the last item and the "
            "`reach` items before it, the k-th before the last at weight rho^k; counts from the training split, "
            f"every user ({len(targets['test']):,}), history left out, HR@{TOP} / NDCG@{TOP}. Test is read for the "
            "last item alone and for the setting with the best validation NDCG@10 only.",
            "",
            "| reach (items before the last) | decay rho | validation | test |",
            "|---:|---:|---|---|",
            *rows,
            "",
            f"Chosen on validation: reach {chosen[0]}, rho {chosen[1]:g}. {cpu_and_cores()}; "
            f"{time.perf_counter() - started:.0f} s, peak resident memory "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB.",
        ],
        [f"python {shlex.join(['benchmarks/chain_reach.py', *(['--data', args.data] if stem else [])])}"],
    )


if __name__ == "__main__":
    main()
