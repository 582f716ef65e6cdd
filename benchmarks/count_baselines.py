"""Counting baselines on Beauty: what a recommender has to beat, and what the demo's small T5 actually learns.

No training, counts from the training split only; every user of the validation and of the test split; top 10 over
all items, once with the history kept (the paper's protocol) and once with it left out (the demo's ranking; Beauty has
no repeated user-item pair, so a seen item is never the answer):

- popularity: items by how often they are a training target (a position >= 1 of a training sequence);
- cluster chain x popularity in the cluster, for the demo indexer's skip-gram and spectral IDs: an item scores
  P(its cluster | the cluster of the user's last item) x P(the item | its cluster), both counted on training
  transitions with additive smoothing. It sees items only through their first ID token plus a per-item count: this
  is about what a small T5 learns in the demo's budget (its cluster step reaches this chain's loss; compare its
  HR@10 in `demo.md`);
- item Markov chain: the last item's most frequent training successors, the rest of the ten by popularity;
- item chain smoothed towards popularity: every item i after the last item j by log(n(j -> i) + a p(i)), n the
  training transition counts and p(i) = (times i is a transition target + 1) / their sum (the model's chain prior
  reads its counts against the same p), i.e. the chain's counts with a pseudo-count a spread by popularity: a popular
  item needs fewer counts to rank, and a popular non-follower can pass a rare follower. a is the value of
  ``PSEUDO_COUNTS`` with the best validation NDCG@10, the history left out (never chosen on test), and is named in
  the row;
- on the synthetic logs (``--data markov``, ``--data markov-repeats``), the oracle: the true next-item probabilities of
  the process that wrote it (the best any ranking can do on average).

Usage:
    python benchmarks/count_baselines.py                 # Beauty: benchmarks/results/count_baselines.md
    python benchmarks/count_baselines.py --data markov   # the synthetic log: results/count_baselines_markov.md
    python benchmarks/count_baselines.py --data markov-repeats   # users come back to items
    python benchmarks/count_baselines.py --data FILE     # any interaction file: results/count_baselines_STEM.md
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import platform
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

import hf_metaid as hm
from hf_metaid.data.interactions import SYNTHETIC_SOURCES
from hf_metaid.evaluation.metrics import exclude_seen, ranking_metrics
from hf_metaid.indexing import MetaIDIndexerConfig
from hf_metaid.workflow.schemes import build_vocabulary

RESULTS = Path(__file__).resolve().parent / "results" / "count_baselines.md"
TOP = 10
# The smoothed chain's pseudo-counts a, one chosen on validation (ties: the smaller, nearer the plain chain).
PSEUDO_COUNTS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
COLUMNS = (("validation", "kept"), ("test", "kept"), ("validation", "left out"), ("test", "left out"))
# The benchmarks' decoder recipe, whose IDs (K = 100, spectral or skip-gram) the cluster chain reads.
DECODER_K100_INDEX = hm.recipes.get("decoder-k100").index


def training_counts(sequences: list[list[int]], num_items: int):
    """Target counts per item and (previous item, next item) transition counts."""
    popularity = np.zeros(num_items)
    transitions: dict[int, Counter] = {}
    for items in sequences:
        for previous, following in itertools.pairwise(items):
            popularity[following] += 1
            transitions.setdefault(previous, Counter())[following] += 1
    return popularity, transitions


def cluster_chain_tops(cluster_of: np.ndarray, popularity, transitions, smoothing: float, top: int) -> np.ndarray:
    """Top-``top`` items after each cluster: P(next cluster | cluster) x P(item | its cluster)."""
    k = int(cluster_of.max()) + 1
    chain = np.full((k, k), smoothing)
    for previous, followers in transitions.items():
        for following, count in followers.items():
            chain[cluster_of[previous], cluster_of[following]] += count
    chain = np.log(chain / chain.sum(axis=1, keepdims=True))
    in_cluster = popularity + smoothing
    in_cluster = np.log(in_cluster / np.bincount(cluster_of, weights=in_cluster, minlength=k)[cluster_of])
    scores = chain[:, cluster_of] + in_cluster[None, :]  # (clusters, items)
    return np.argsort(-scores, axis=1, kind="stable")[:, :top]  # ties: the lower item number first, whatever top


def markov_top(last: int, popularity: np.ndarray, popular: list[int], transitions, top: int) -> list[int]:
    """The last item's most frequent successors (ties: the more popular first), then the most popular items."""
    followers = transitions.get(last, Counter())
    best = sorted(followers, key=lambda item: (-followers[item], -popularity[item], item))[:top]
    return (best + [item for item in popular if item not in followers])[:top]


def popularity_shares(popularity: np.ndarray) -> np.ndarray:
    """p(i): each item's count as a transition target plus one, as a share of their sum (the chain prior's
    ``expected_counts`` divided by a)."""
    smoothed = popularity + 1.0
    return smoothed / smoothed.sum()


def smoothed_chain_top(last: int, expected: np.ndarray, by_popularity: np.ndarray, transitions, top: int) -> list[int]:
    """The ``top`` items by n(last -> i) + a p(i), the order of log(n + a p) (``expected``: a p(i) per item;
    ``by_popularity``: every item, the most popular first). Ties: the more popular first, then the lower number."""
    return reach_chain_top([last], [1.0], expected, by_popularity, transitions, top)


def reach_chain_top(
    recent: list[int], weights: list[float], expected: np.ndarray, by_popularity: np.ndarray, transitions, top: int
) -> list[int]:
    """The ``top`` items by sum_k w_k n(j_k -> i) + a p(i), j_k the k-th of ``recent`` (the last item first) and w_k
    its weight of ``weights``: the smoothed chain of several recent items, as the model's chain prior with
    ``chain_prior_earlier`` reads them. Ties as :func:`smoothed_chain_top`."""
    summed: Counter = Counter()
    for item, weight in zip(recent, weights, strict=False):
        for follower, count in transitions.get(item, Counter()).items():
            summed[follower] += weight * count
    items = np.fromiter(summed, dtype=np.int64, count=len(summed))
    counts = np.fromiter(summed.values(), dtype=float, count=len(summed))
    # A non-follower scores a p(i) alone, so the best of them are the most popular: the first top + len(items)
    # items by popularity hold ``top`` of them.
    head = by_popularity[: top + len(items)]
    rest = head[~np.isin(head, items)][:top]
    candidates = np.concatenate([items, rest])
    scores = np.concatenate([counts, np.zeros(len(rest))]) + expected[candidates]
    order = np.lexsort((candidates, -expected[candidates], -scores))
    return candidates[order[:top]].tolist()


def left_out_metrics(ranked: list[list[int]], histories: list[list[int]], targets: list[int], top: int = TOP) -> dict:
    """HR@``top``, NDCG@``top`` and MRR@``top`` of ``ranked`` (one list per user) with each user's history left out."""
    return ranking_metrics(exclude_seen(ranked, histories, k=top), targets, ks=(top,))


def positional_splits(data: str):
    """``(splits, names, histories, targets)`` of ``data`` (a name or file ``load_interactions`` reads): its
    leave-one-out splits and catalogue, and the validation and test histories and targets as catalogue positions (the
    validation histories are the training sequences)."""
    interactions = hm.load_interactions(data)
    splits = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    position_of = {item: position for position, item in enumerate(names["items"])}
    histories = {
        name: [[position_of[item] for item in h] for h in splits[name]["history"]] for name in ("validation", "test")
    }
    targets = {name: [position_of[t] for t in splits[name]["target"]] for name in ("validation", "test")}
    return splits, names, histories, targets


def choose_pseudo_count(
    ranker_for: Callable[[float], Callable[[int], list[int]]],
    histories: list[list[int]],
    targets: list[int],
    grid: tuple[float, ...] = PSEUDO_COUNTS,
    top: int = TOP,
) -> tuple[float, dict[float, float]]:
    """The a of ``grid`` whose ranker (``ranker_for(a)``: last item -> ranked items) has the best NDCG@``top`` on
    ``histories`` and ``targets`` with the history left out (ties: the smaller a), and each a's NDCG@``top``. Pass
    the validation split: what the choice reads is all it is fitted to."""
    ndcg = {}
    for a in grid:
        ranker = ranker_for(a)
        ranked = [ranker(history[-1]) for history in histories]
        ndcg[a] = left_out_metrics(ranked, histories, targets, top)[f"ndcg@{top}"]
    return max(grid, key=lambda a: (ndcg[a], -a)), ndcg


def oracle_top(process, number: np.ndarray, last: int, top: int) -> list[int]:
    """The catalogue positions of the ``top`` items the process most likely writes after ``last`` (on ``markov``
    seen items are cut later by the protocol: the process never repeats them, so leaving them out is the oracle's
    ranking; on ``markov-repeats`` it writes them again, so keeping them is)."""
    probabilities = process.next_item_probabilities(int(number[last]))[number]
    return np.argsort(-probabilities, kind="stable")[:top].tolist()


@dataclasses.dataclass
class CountingReferences:
    """One data set's splits in catalogue positions, and each reference's ranking (``depth`` items) after a last
    item: the references of the docstring, counted on the training split only."""

    histories: dict[str, list[list[int]]]
    targets: dict[str, list[int]]
    num_items: int
    depth: int
    rankers: dict[str, Callable[[int], list[int]]]
    # The smoothed chain's validation NDCG@10 (history left out) for each pseudo-count tried, and the one chosen.
    pseudo_counts: dict[float, float] = dataclasses.field(default_factory=dict)
    pseudo_count: float | None = None

    def ranked(self, name: str, split: str, leave_out: bool, top: int = TOP) -> list[list[int]]:
        """The top ``top`` of reference ``name`` for every user of ``split``, the user's history kept or left out."""
        ranked = [self.rankers[name](history[-1]) for history in self.histories[split]]
        if leave_out:
            return exclude_seen(ranked, self.histories[split], k=top)
        return [items[:top] for items in ranked]


def counting_references(
    data: str,
    smoothing: float = 0.1,
    embeddings: tuple[str, ...] = ("skipgram", "spectral"),
    index: MetaIDIndexerConfig = DECODER_K100_INDEX,
) -> CountingReferences:
    """Popularity, the cluster chain for each of ``embeddings`` (IDs from ``index``, by default the demo's indexer
    settings), the item Markov chain, the item chain smoothed towards popularity (its pseudo-count chosen on the
    validation split) and, on the synthetic log, the oracle, for ``data`` (a name or file ``load_interactions``
    reads)."""
    splits, names, histories, targets = positional_splits(data)
    popularity, transitions = training_counts(histories["validation"], len(names["items"]))  # the training sequences
    depth = TOP + max(len(h) for h in histories["test"])  # long enough to leave any history out and keep ten
    popular = [int(item) for item in np.argsort(-popularity, kind="stable")[: 2 * depth]]
    rankers: dict[str, Callable[[int], list[int]]] = {"popularity": lambda last: popular[:depth]}
    for embedding in embeddings:
        vocabulary = build_vocabulary(splits["train"], names, dataclasses.replace(index, embedding=embedding))
        item_position = {item: position for position, item in enumerate(vocabulary.items)}
        cluster_of = np.array([vocabulary.item_codes[item_position[item], 0] for item in names["items"]])
        tops = cluster_chain_tops(cluster_of, popularity, transitions, smoothing, depth).tolist()
        rankers[f"cluster chain x popularity in the cluster, {embedding} IDs (K={index.num_clusters})"] = (
            lambda last, tops=tops, cluster_of=cluster_of: tops[cluster_of[last]]
        )
    cache: dict[int, list[int]] = {}
    rankers["item Markov chain"] = lambda last: cache.setdefault(
        last, markov_top(last, popularity, popular, transitions, depth)
    )
    shares, by_popularity = popularity_shares(popularity), np.argsort(-popularity, kind="stable")

    def smoothed_ranker(a: float) -> Callable[[int], list[int]]:
        expected, tops = a * shares, {}

        def rank(last: int) -> list[int]:
            if last not in tops:
                tops[last] = smoothed_chain_top(last, expected, by_popularity, transitions, depth)
            return tops[last]

        return rank

    pseudo_count, pseudo_counts = choose_pseudo_count(smoothed_ranker, histories["validation"], targets["validation"])
    rankers[f"item chain smoothed towards popularity (pseudo-count a = {pseudo_count:g}, chosen on validation)"] = (
        smoothed_ranker(pseudo_count)
    )
    if data.lower() in SYNTHETIC_SOURCES:  # a synthetic log: its process is known
        process = hm.data.markov_interactions(**SYNTHETIC_SOURCES[data.lower()])[1]
        number = np.array([int(item[1:]) for item in names["items"]])  # catalogue position -> the process's item
        rankers["oracle: the process's true next-item probabilities"] = lambda last: oracle_top(
            process, number, last, depth
        )
    return CountingReferences(histories, targets, len(names["items"]), depth, rankers, pseudo_counts, pseudo_count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoothing", type=float, default=0.1, help="additive smoothing of the counts")
    parser.add_argument(
        "--data", default="beauty", help="'beauty', 'markov', 'markov-repeats', 'markov-large' or an interaction file"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    references = counting_references(args.data, args.smoothing)
    rows = []
    for name in references.rankers:
        cells = {}
        for split, protocol in COLUMNS:
            lists = references.ranked(name, split, leave_out=protocol == "left out")
            metrics = ranking_metrics(lists, references.targets[split], ks=(TOP,))
            cells[split, protocol] = f"{metrics['hr@10']:.4f} / {metrics['ndcg@10']:.4f}"
        row = [name, *(cells[key] for key in COLUMNS)]
        rows.append(row)
        print(" | ".join(row), flush=True)
    targets, demo = references.targets, DECODER_K100_INDEX
    headers = ["reference", "validation", "test", "validation, history left out", "test, history left out"]
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    report = "\n".join(
        [
            f"# Counting baselines on {'Beauty' if args.data == 'beauty' else args.data}",
            "",
            f"Command: `python {shlex.join(sys.argv)}` (smoothing {args.smoothing}). Counts from the training "
            f"split only; all {len(targets['test']):,} users of each split; top {TOP} over all "
            f"{references.num_items:,} items, with the user's history kept (the paper's protocol) or left out (the "
            f"demo's ranking). Each cell: HR@10 / NDCG@10. IDs from the demo's indexer settings "
            f"(K={demo.num_clusters}, dim {demo.dim}, seed {demo.seed}). See the script's docstring for each row.",
            "",
            f"The smoothed chain's pseudo-count a = {references.pseudo_count:g} has the best validation NDCG@10 with "
            "the history left out among "
            + ", ".join(f"a = {a:g}: {ndcg:.4f}" for a, ndcg in references.pseudo_counts.items())
            + "; its test figures are read at that a only.",
            "",
            *lines,
            "",
            f"Machine: {platform.machine()}, python {sys.version.split()[0]}; "
            f"{math.ceil(time.perf_counter() - started)} s.",
        ]
    )
    out = RESULTS if args.data == "beauty" else RESULTS.with_name(f"count_baselines_{Path(args.data).stem}.md")
    out.parent.mkdir(exist_ok=True)
    out.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
