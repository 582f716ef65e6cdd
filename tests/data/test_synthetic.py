"""The synthetic Markov-chain log: deterministic, loadable like any log, and its oracle ranks as the process says."""

from __future__ import annotations

import numpy as np
import pytest

import hf_metaid as hm
from hf_metaid.data.synthetic import markov_interactions, oracle_scores


def test_same_arguments_same_log_and_the_library_reads_it():
    first, process = markov_interactions(num_users=200, num_items=300, seed=3)
    second, _ = markov_interactions(num_users=200, num_items=300, seed=3)
    assert first.to_dict() == second.to_dict()
    assert markov_interactions(num_users=200, num_items=300, seed=4)[0].to_dict() != first.to_dict()
    loaded = hm.load_interactions(first)
    splits = hm.leave_one_out(loaded)
    assert len(splits["test"]) == 200
    assert hm.data.repeated_pairs(splits["train"]) == 0  # no repeats unless asked
    lengths = np.bincount([int(u[1:]) for u in first["user"]])
    assert lengths.min() >= 3 and 8 < lengths.mean() < 16
    np.testing.assert_allclose(process.weights.sum(axis=1), 1.0)
    assert hm.data.repeated_pairs(hm.leave_one_out(markov_interactions(200, 300, repeats=True)[0])["train"]) > 0


def test_the_oracle_ranks_targets_far_above_popularity():
    """On the process's own draws, the true next-item probabilities put most test targets in the top 10; popularity
    does not (a check that the log carries the sequential signal the oracle describes)."""
    log, process = markov_interactions(num_users=400, num_items=500, fan_out=4, noise=0.2, seed=1)
    splits = hm.leave_one_out(log)
    oracle_hits = popular_hits = 0
    for row in splits["test"]:
        seen = [int(item[1:]) for item in row["history"]]
        scores = oracle_scores(process, row["history"])
        popular = process.popularity.copy()
        popular[seen] = -np.inf
        target = int(row["target"][1:])
        oracle_hits += target in np.argsort(-scores)[:10]
        popular_hits += target in np.argsort(-popular)[:10]
    assert oracle_hits / 400 > 0.6 and popular_hits / 400 < 0.3
    assert np.isneginf(scores[seen]).all()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_items": 50}, "num_items must exceed"),
        ({"noise": 1.5}, "noise"),
        ({"mean_length": 2}, "mean_length"),
        ({"fan_out": 0}, "fan_out"),
    ],
)
def test_bad_settings_are_refused_by_name(arguments, message):
    with pytest.raises(hm.InvalidArgumentError, match=message):
        markov_interactions(**{"num_users": 10, **arguments})


def test_markov_is_a_data_name_like_beauty():
    loaded = hm.load_interactions("markov")
    log, _ = markov_interactions()
    assert loaded["item"] == log["item"] and loaded["user"] == log["user"]
    assert hm.data.repeated_pairs(loaded) == 0
    again = hm.load_interactions("markov-repeats")  # the same process, where users come back to items
    with_repeats, _ = markov_interactions(repeats=True)
    assert again["item"] == with_repeats["item"] and hm.data.repeated_pairs(again) > 0.05 * again.num_rows


@pytest.mark.slow
def test_markov_large_is_the_36000_user_log():
    """The log a 15-minute demo is meant to handle: 36,000 users, about 8 interactions each, no repeated pair."""
    loaded = hm.load_interactions("markov-large")
    assert len(set(loaded["user"][:])) == 36000 and 7.5 * 36000 < loaded.num_rows < 8.5 * 36000
    assert 17000 < len(set(loaded["item"][:])) <= 18000 and hm.data.repeated_pairs(loaded) == 0
