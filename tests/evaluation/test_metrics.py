"""Ranking metrics against hand-computed ranks, the diversity / memorization scores on small fixtures, and the
``evaluate`` wrapper."""

from __future__ import annotations

import importlib
import math
import re
import sys

import numpy as np
import pytest

from hf_metaid.errors import InvalidArgumentError
from hf_metaid.evaluation.id_quality import diversity_score, item_id_embeddings, memorization_score
from hf_metaid.evaluation.metrics import MetricAccumulator, exclude_seen, rank_of_target, ranking_metrics

# Four users whose targets sit at ranks 0, 3, 7 and nowhere (hand-placed).
RECOMMENDED = [
    ["a", "b", "c", "d", "e", "f"],
    ["b", "c", "d", "a", "e"],
    ["x", "y", "z", "w", "v", "u", "t", "s", "r"],
    ["p", "q"],
]
TARGETS = ["a", "a", "s", "r"]


def test_rank_of_target():
    assert rank_of_target(RECOMMENDED, TARGETS).tolist() == [0, 3, 7, -1]
    assert rank_of_target([["a", "b", "a"]], ["a"]).tolist() == [0]  # first occurrence counts
    assert rank_of_target([[]], ["a"]).tolist() == [-1]


def test_ranking_metrics_hand_computed():
    result = ranking_metrics(RECOMMENDED, TARGETS, ks=(5, 10))
    # rank 0 -> NDCG 1, MRR 1; rank 3 -> NDCG 1/log2(5), MRR 1/4; rank 7 -> NDCG 1/log2(9), MRR 1/8 (only @10).
    assert result["hr@5"] == pytest.approx(2 / 4)
    assert result["hr@10"] == pytest.approx(3 / 4)
    assert result["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert result["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(9)) / 4)
    assert result["mrr@5"] == pytest.approx((1 + 1 / 4) / 4)
    assert result["mrr@10"] == pytest.approx((1 + 1 / 4 + 1 / 8) / 4)
    assert result["num_users"] == 4
    assert result["invalid_rate"] == 0.0
    assert set(result) == {"hr@5", "ndcg@5", "mrr@5", "hr@10", "ndcg@10", "mrr@10", "invalid_rate", "num_users"}


def test_seen_at_k_is_the_share_of_the_top_k_spent_on_history_items():
    accumulator = MetricAccumulator(ks=(1, 3))
    accumulator.add([["a", "b", "c"], ["d"]], ["c", "x"], [["b", "c"], ["d", "e"]])
    accumulator.add([["f", "g", "h"]], ["f"], [[]])
    result = accumulator.compute()
    # slots @1: a no, d yes, f no -> 1/3; @3: 2 of 3, 1 of 3 (a short list counts its missing slots as unseen), 0
    assert result["seen@1"] == pytest.approx(1 / 3)
    assert result["seen@3"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    with pytest.raises(InvalidArgumentError, match="every batch or with none"):
        accumulator.add([["a"]], ["a"])
    with pytest.raises(InvalidArgumentError, match=r"histories\[0\] must be a list"):
        MetricAccumulator(ks=(1,)).add([["a"]], ["a"], ["ab"])  # a string is not read as its characters
    plain = MetricAccumulator(ks=(1,)).add([["a"]], ["a"])
    assert "seen@1" not in plain.compute()
    with pytest.raises(InvalidArgumentError, match="every batch or with none"):
        plain.add([["a"]], ["a"], [["a"]])


def test_cutoffs_at_boundaries():
    # rank 0 counts at k=1; rank 3 counts at k=4 but not at k=3.
    result = ranking_metrics([["a", "b"], ["b", "c", "d", "a"]], ["a", "a"], ks=(1, 3, 4))
    assert result["hr@1"] == pytest.approx(0.5)
    assert result["hr@3"] == pytest.approx(0.5)
    assert result["hr@4"] == pytest.approx(1.0)
    assert result["mrr@4"] == pytest.approx((1 + 1 / 4) / 2)
    assert result["ndcg@4"] == pytest.approx((1 + 1 / math.log2(5)) / 2)
    # lists shorter than k are misses past their end, not errors
    assert ranking_metrics([["a"]], ["b"], ks=(10,))["hr@10"] == 0.0


def test_invalid_rate_counts_unknown_items_and_repeats():
    lists = [["a", "zz", "a"], ["b", "c"]]  # "zz" is not an item, the second "a" is a repeat
    catalogue = {"a", "b", "c"}
    assert ranking_metrics(lists, ["a", "c"], ks=(5,), valid_items=catalogue)["invalid_rate"] == pytest.approx(2 / 5)
    assert ranking_metrics(lists, ["a", "c"], ks=(5,))["invalid_rate"] == pytest.approx(1 / 5)  # repeats only
    # entries past the largest cut-off are not judged
    assert ranking_metrics([["a", "b", "zz"]], ["a"], ks=(2,), valid_items=catalogue)["invalid_rate"] == 0.0


@pytest.mark.parametrize("ks", [(), (0,), (5, -1), (2.5,)])
def test_bad_ks_raise(ks):
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics([["a"]], ["a"], ks=ks)


def test_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError, match="one entry per user"):
        ranking_metrics([["a"], ["b"]], ["a"])
    with pytest.raises(ValueError, match="no users"):
        ranking_metrics([], [])


def test_exclude_seen():
    recommended = [["a", "b", "c", "d"], ["x", "y"]]
    histories = [["b", "zz"], []]
    assert exclude_seen(recommended, histories, k=2) == [["a", "c"], ["x", "y"]]
    assert exclude_seen(recommended, histories, k=10) == [["a", "c", "d"], ["x", "y"]]
    with pytest.raises(ValueError):
        exclude_seen(recommended, histories[:1], k=2)
    with pytest.raises(ValueError):
        exclude_seen(recommended, histories, k=0)


def test_accumulator_equals_one_shot():
    catalogue = {"a", "b", "c", "d", "e", "f", "p", "q", "r", "s", "x", "y", "z"}
    accumulator = MetricAccumulator(ks=(5, 10), valid_items=catalogue)
    accumulator.add(RECOMMENDED[:1], TARGETS[:1]).add(RECOMMENDED[1:3], TARGETS[1:3])
    accumulator.add(RECOMMENDED[3:], TARGETS[3:])
    assert accumulator.compute() == ranking_metrics(RECOMMENDED, TARGETS, ks=(5, 10), valid_items=catalogue)
    accumulator.reset()
    with pytest.raises(ValueError, match="no users"):
        accumulator.compute()


# ------------------------------------------------------------------------------------------------------ diversity
def test_diversity_hand_computed_and_mean_of_tokens():
    # softmax([0, 0]) = (1/2, 1/2), softmax([ln 3, 0]) = (3/4, 1/4): KL + reverse KL = (1/4) ln 3.
    table = np.array([[0.0, 0.0], [math.log(3), 0.0], [2 * math.log(3), 0.0]])
    assert diversity_score(table[:2], np.array([[0], [1]])) == pytest.approx(0.25 * math.log(3))
    # an item spelled by tokens 0 and 2 has ID embedding (ln 3, 0), the mean of the two rows
    assert item_id_embeddings(table, np.array([[0, 2]])) == pytest.approx(np.array([[math.log(3), 0.0]]))
    assert diversity_score(table, np.array([[0, 0], [0, 2]])) == pytest.approx(0.25 * math.log(3))


def test_diversity_identical_zero_different_positive_and_seeded():
    rng = np.random.default_rng(0)
    same = np.tile(rng.standard_normal(8), (50, 1))
    ids = np.arange(50)[:, None]
    assert diversity_score(same, ids, num_pairs=200) == pytest.approx(0.0, abs=1e-12)
    distinct = rng.standard_normal((50, 8))
    score = diversity_score(distinct, ids, num_pairs=200, seed=3)
    assert score > 0.1
    assert diversity_score(distinct, ids, num_pairs=200, seed=3) == score
    assert diversity_score(distinct, ids, num_pairs=200, seed=4) != score
    # 50 items spelled by only two distinct tokens collapse onto two ID embeddings: a lower score
    collapsed = (np.arange(50) % 2)[:, None]
    assert diversity_score(distinct, collapsed, num_pairs=200) < score


# --------------------------------------------------------------------------------------------------- memorization
def _rated_fixture(num_users: int = 40, num_items: int = 15):
    """Users and items in three taste groups; users rate items of their own group higher."""
    rng = np.random.default_rng(7)
    user_group = np.arange(num_users) % 3
    item_group = np.arange(num_items) % 3
    ratings: dict[str, dict[str, float]] = {}
    for u in range(num_users):
        rated = rng.choice(num_items, size=8, replace=False)
        ratings[f"u{u}"] = {f"i{i}": float(5 if item_group[i] == user_group[u] else rng.integers(1, 3)) for i in rated}
    items = [f"i{i}" for i in range(num_items)]
    # the items' rating vectors over users, so embedding similarity agrees with rating similarity by construction
    vectors = np.array([[ratings[f"u{u}"].get(item, 0.0) for u in range(num_users)] for item in items])
    return items, vectors, ratings


def test_memorization_agreeing_embeddings_score_high():
    items, vectors, ratings = _rated_fixture()
    agreeing = {item: vector for item, vector in zip(items, vectors, strict=True)}
    assert memorization_score(agreeing, ratings, num_pairs=1000) == pytest.approx(1.0)
    noisy = {item: v + np.random.default_rng(1).normal(0, 0.3, v.shape) for item, v in agreeing.items()}
    high = memorization_score(noisy, ratings, num_pairs=1000, seed=0)
    assert high > 0.8
    shuffled_vectors = vectors[np.random.default_rng(2).permutation(len(items))]
    shuffled = {item: vector for item, vector in zip(items, shuffled_vectors, strict=True)}
    assert memorization_score(shuffled, ratings, num_pairs=1000) < high - 0.3


def test_memorization_sampled_pairs_are_seeded_and_unrated_items_skipped():
    items, vectors, ratings = _rated_fixture(num_items=60)
    embeddings = {item: vector for item, vector in zip(items, vectors, strict=True)}
    embeddings["never_rated"] = np.ones(vectors.shape[1])
    first = memorization_score(embeddings, ratings, num_pairs=300, seed=5)
    assert first == memorization_score(embeddings, ratings, num_pairs=300, seed=5)
    assert first > 0.9
    with pytest.raises(ValueError, match="two items"):
        memorization_score({"i0": vectors[0]}, ratings)


# --------------------------------------------------------------------------------------------- evaluate interface
def test_evaluate_metric_matches_ranking_metrics():
    from hf_metaid.evaluation.metric import MetaIDRankingMetric, load_metric

    metric = load_metric()
    assert isinstance(metric, MetaIDRankingMetric)
    metric.add_batch(predictions=RECOMMENDED[:2], references=TARGETS[:2])
    metric.add_batch(predictions=RECOMMENDED[2:], references=TARGETS[2:])
    assert metric.compute(ks=(5, 10)) == ranking_metrics(RECOMMENDED, TARGETS, ks=(5, 10))
    one_shot = load_metric().compute(predictions=RECOMMENDED, references=TARGETS, ks=(1, 3), valid_items={"a"})
    assert one_shot == ranking_metrics(RECOMMENDED, TARGETS, ks=(1, 3), valid_items={"a"})


def test_evaluate_wrapper_without_evaluate_says_which_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "hf_metaid.evaluation.metric", raising=False)
    monkeypatch.setitem(sys.modules, "evaluate", None)  # what an install without the extra looks like to import
    with pytest.raises(ImportError, match=re.escape("pip install hf-metaid[evaluate]")):
        importlib.import_module("hf_metaid.evaluation.metric")
