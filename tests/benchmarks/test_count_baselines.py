"""benchmarks/count_baselines.py: the item chain smoothed towards popularity ranks by log(n + a p), and its
pseudo-count a is chosen on validation, never on test."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_the_smoothed_chain_ranks_by_log_of_count_plus_pseudo_count_times_popularity():
    """After item 0: item 1 (3 counts, rare) and item 2 (2 counts, popular) follow it; items 3 (rare) and 4 (the most
    popular) never do. Target counts 0, 3, 8, 1, 9, 0, 0, 0 over 21 transitions, so p = (count + 1) / 29."""
    import count_baselines

    sequences = [[0, 1]] * 3 + [[0, 2]] * 2 + [[5, 2]] * 6 + [[6, 3]] + [[7, 4]] * 9
    popularity, transitions = count_baselines.training_counts(sequences, 8)
    shares = count_baselines.popularity_shares(popularity)
    assert shares == pytest.approx(np.array([1, 4, 9, 2, 10, 1, 1, 1]) / 29, abs=1e-15)
    by_popularity = np.argsort(-popularity, kind="stable")

    def top(a: float, depth: int = 8) -> list[int]:
        return count_baselines.smoothed_chain_top(0, a * shares, by_popularity, transitions, depth)

    # a = 1: the counts rule (the plain chain's order); the popular non-follower 4 above the rare non-follower 3;
    # items 0, 5, 6 and 7 tie on a p = 1/29 and come by number.
    assert top(1.0) == [1, 2, 4, 3, 0, 5, 6, 7]
    # a = 10: 2 + 90/29 = 5.10 passes 3 + 40/29 = 4.38: the popular item with 2 counts above the rare one with 3.
    assert top(10.0) == [2, 1, 4, 3, 0, 5, 6, 7]
    # a = 29: scores n + (count + 1): 2 -> 11, 4 -> 10 (never after 0), 1 -> 7: a popular non-follower passes a
    # rare follower, which the plain chain never lets happen.
    assert top(29.0) == [2, 4, 1, 3, 0, 5, 6, 7]
    assert top(29.0, depth=3) == [2, 4, 1]
    # Whatever a, the order is that of log(n(0 -> i) + a p(i)).
    counts = np.array([0, 3, 2, 0, 0, 0, 0, 0])
    for a in (0.5, 3.0, 17.0, 100.0, 3000.0):
        score = [math.log(counts[i] + a * shares[i]) for i in range(8)]
        assert top(a) == sorted(range(8), key=lambda i: (-score[i], -popularity[i], i)), a
    assert count_baselines.smoothed_chain_top(5, 1.0 * shares, by_popularity, transitions, 3) == [2, 4, 1]
    assert count_baselines.smoothed_chain_top(3, 1.0 * shares, by_popularity, transitions, 3) == [4, 2, 1]


def write_log(path: Path) -> Path:
    """After L, the rare F followed once (by u1) and the popular P (a target 5 times) never did. v's validation target
    after L is F, which wants F above P: a (p(P) - p(F)) < 1. t's test target after L is P, which wants the opposite.
    24 items, 8 training transitions: p(P) - p(F) = (6 - 2) / 32, so F ranks above P for a < 8."""
    users = {"u1": ["L", "F", "Q", "R"], "v": ["M", "L", "F", "X"], "t": ["N1", "N2", "L", "P"]}
    users |= {f"p{k}": [f"Z{k}", "P", f"W{k}", f"V{k}"] for k in range(1, 6)}
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["user", "item"])
        for user, items in users.items():
            writer.writerows([user, item] for item in items)
    return path


def test_the_pseudo_count_is_chosen_on_validation_never_on_test(tmp_path):
    import count_baselines

    references = count_baselines.counting_references(str(write_log(tmp_path / "log.csv")), embeddings=())
    # Validation prefers any a < 8 (ties: the smallest); test alone would have chosen an a > 8.
    assert references.pseudo_count == 1.0
    assert references.pseudo_counts[1.0] == pytest.approx(references.pseudo_counts[3.0], abs=1e-12)
    assert references.pseudo_counts[3.0] > references.pseudo_counts[10.0] + 0.01
    name = "item chain smoothed towards popularity (pseudo-count a = 1, chosen on validation)"
    assert list(references.rankers)[-1] == name

    interactions = count_baselines.hm.load_interactions(str(tmp_path / "log.csv"))
    items = count_baselines.hm.catalogue(interactions)["items"]
    f, p, last = (items.index(item) for item in ("F", "P", "L"))
    assert references.rankers[name](last)[:2] == [f, p]
    user_t = next(
        i for i, history in enumerate(references.histories["test"]) if len(history) == 3 and history[-1] == last
    )
    assert references.targets["test"][user_t] == p

    popularity, transitions = count_baselines.training_counts(references.histories["validation"], len(items))
    shares, by_popularity = count_baselines.popularity_shares(popularity), np.argsort(-popularity, kind="stable")

    def ranker_for(a):
        return lambda last: count_baselines.smoothed_chain_top(last, a * shares, by_popularity, transitions, 20)

    on_test, _ = count_baselines.choose_pseudo_count(
        ranker_for, references.histories["test"], references.targets["test"]
    )
    assert on_test == 10.0
