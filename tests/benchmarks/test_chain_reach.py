"""benchmarks/chain_reach.py: the smoothed chain of several recent items sums their weighted counts, and the reach
and decay are chosen on validation, test read only for that choice and for the last item alone."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from test_count_baselines import write_log

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_recent_items_add_their_weighted_counts_before_popularity():
    """Item 0 is followed by 1 (3 times) and 2 (twice), item 5 by 2 (6 times): after 5 then 0, item 2 scores
    2 + 0.5 x 6 = 5 and passes item 1 (3); the last item alone keeps 1 first."""
    import chain_reach
    import count_baselines

    sequences = [[0, 1]] * 3 + [[0, 2]] * 2 + [[5, 2]] * 6 + [[6, 3]] + [[7, 4]] * 9
    popularity, transitions = count_baselines.training_counts(sequences, 8)
    expected = count_baselines.popularity_shares(popularity)  # a = 1
    by_popularity = np.argsort(-popularity, kind="stable")
    assert chain_reach.reach_weights(2, 0.5) == [1.0, 0.5, 0.25]
    rank = chain_reach.reach_ranker([1.0, 0.5], expected, by_popularity, transitions)
    assert rank([5, 0])[:4] == [2, 1, 4, 3]  # the history is read last item first
    assert chain_reach.reach_ranker([1.0], expected, by_popularity, transitions)([5, 0])[:2] == [1, 2]
    alone = count_baselines.smoothed_chain_top(0, expected, by_popularity, transitions, 8)
    assert count_baselines.reach_chain_top([0, 5], [1.0, 0.0], expected, by_popularity, transitions, 8) == alone


def test_the_reach_is_chosen_on_validation_and_test_is_read_for_it_alone(tmp_path, monkeypatch):
    import chain_reach

    out = tmp_path / "reach.md"
    monkeypatch.setattr(
        sys, "argv", ["chain_reach.py", "--data", str(write_log(tmp_path / "log.csv")), "--results", str(out)]
    )
    chain_reach.main()
    rows = [line for line in out.read_text().splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == 1 + len(chain_reach.REACHES) * len(chain_reach.DECAYS)
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    ndcg = [float(cell[2].split(" / ")[1]) for cell in cells]
    read_on_test = [i for i, cell in enumerate(cells) if cell[3]]
    chosen = max(range(len(cells)), key=lambda i: (ndcg[i], -int(cells[i][0]), -float(cells[i][1].replace("—", "1"))))
    assert read_on_test == sorted({0, chosen})
    reach, decay = cells[chosen][0], cells[chosen][1].replace("—", "1")
    assert f"Chosen on validation: reach {reach}, rho {decay}." in out.read_text()
