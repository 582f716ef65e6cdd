"""The tie-aware ranking comparison the decoding tests use: it accepts what rounding can change and nothing else."""

from __future__ import annotations

import math

import pytest
import torch

from ranking_checks import assert_beam_cuts_clear, assert_same_ranking, assert_same_recommendations

INF = math.inf
SCORES = [-1.0, -2.0, -2.00001, -3.0, -4.0]  # positions 1 and 2 tied within 1e-4


def test_equal_rankings_pass_in_every_form():
    items = [[4, 7, 1, 9, 2], [3, 5, 6, 0, 8]]
    scores = [SCORES, [s - 1 for s in SCORES]]
    assert_same_ranking(items, scores, items, scores)
    assert_same_ranking(torch.tensor(items), torch.tensor(scores), items, scores)
    assert_same_ranking(items[0], SCORES, items[0], SCORES)  # one row
    names = [[f"i{n}" for n in row] for row in items]
    assert_same_ranking(names, scores, names, scores)


def test_a_swap_of_tied_neighbours_passes_and_a_swap_of_separated_ones_fails():
    assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 1, 7, 9, 2], SCORES)
    with pytest.raises(AssertionError, match=r"different items at row 0, positions 0\.\.0"):
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [7, 4, 1, 9, 2], SCORES)
    with pytest.raises(AssertionError, match=r"positions 3\.\.3"):
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 7, 1, 2, 9], SCORES)


def test_a_tie_seen_on_either_side_counts_and_the_tolerance_is_the_callers():
    other = [-1.0, -2.00002, -2.00002, -3.0, -4.0]  # tied exactly on this side
    assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 1, 7, 9, 2], other)
    with pytest.raises(AssertionError, match="different items"):
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 1, 7, 9, 2], SCORES, atol=1e-6)


def test_a_block_of_tied_neighbours_may_come_in_any_order_but_must_hold_the_same_items():
    scores = [-1.0, -2.0, -2.00004, -2.00008, -3.0]  # a chain of three tied neighbours
    assert_same_ranking([4, 7, 1, 9, 2], scores, [4, 9, 7, 1, 2], scores)
    with pytest.raises(AssertionError, match=r"positions 1\.\.3"):
        assert_same_ranking([4, 7, 1, 9, 2], scores, [4, 9, 7, 5, 2], scores)


def test_another_item_or_different_scores_fail():
    with pytest.raises(AssertionError, match="different items"):
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 7, 1, 6, 2], SCORES)
    with pytest.raises(AssertionError, match="scores differ"):
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 7, 1, 9, 2], [-1.0, -2.0, -2.00001, -3.001, -4.0])
    with pytest.raises(AssertionError, match="row 1"):  # the rows are checked one by one
        assert_same_ranking([[4, 7], [1, 9]], [[-1, -2], [-1, -2]], [[4, 7], [9, 1]], [[-1, -2], [-1, -2]])


def test_the_last_kept_item_may_be_another_only_where_the_scores_show_a_tie():
    """Only the top k is known: an item tied with the last kept one may have lost to one just outside."""
    tail = [-1.0, -2.0, -3.0, -4.0, -4.00002]  # the last two tied
    assert_same_ranking([4, 7, 1, 9, 2], tail, [4, 7, 1, 2, 6], tail)  # 9 and 6 tied with the last kept score
    assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 7, 1, 9, 6], SCORES)  # the last slot alone: tied outside
    chain = [-1.0, -2.0, -3.9999, -3.99995, -4.0]  # positions 2..4 tied neighbour to neighbour within 6e-5
    assert_same_ranking([4, 7, 1, 9, 2], chain, [4, 7, 9, 1, 6], chain, atol=6e-5)
    with pytest.raises(AssertionError, match="item 1 is kept on one side only"):  # 1e-4 from the last kept score
        assert_same_ranking([4, 7, 1, 9, 2], chain, [4, 7, 6, 9, 2], chain, atol=6e-5)
    with pytest.raises(AssertionError, match="different items"):  # a tie inside the list is not a tie at its end
        assert_same_ranking([4, 7, 1, 9, 2], SCORES, [4, 7, 6, 9, 2], SCORES)


def test_padding_must_agree_and_a_padded_list_keeps_every_item_left():
    padded = [-1.0, -2.0, -2.00001, -INF, -INF]
    assert_same_ranking([4, 7, 1, -1, -1], padded, [4, 1, 7, -1, -1], padded)
    with pytest.raises(AssertionError, match="different items"):  # nothing lies outside a padded list
        assert_same_ranking([4, 7, 1, -1, -1], padded, [4, 7, 6, -1, -1], padded)
    with pytest.raises(AssertionError, match="padding differs"):
        assert_same_ranking([4, 7, 1, -1, -1], padded, [4, 7, 1, -1, 3], padded)
    with pytest.raises(AssertionError, match="scores differ"):
        assert_same_ranking([4, 7, 1, 9, -1], [-1.0, -2.0, -3.0, -4.0, -INF], [4, 7, 1, -1, -1], padded)


def test_recommendations_compare_as_rankings_of_one_or_many_users():
    one = [("i4", -1.0), ("i7", -2.0), ("i1", -2.00001)]
    assert_same_recommendations([("i4", -1.0), ("i1", -2.00001), ("i7", -2.0)], one)
    assert_same_recommendations([[["i4", -1.0], ["i1", -2.0], ["i7", -2.0]]], [one])  # JSON's lists, one user
    with pytest.raises(AssertionError, match="different items"):
        assert_same_recommendations([("i7", -1.0), ("i4", -2.0), ("i1", -2.00001)], one)
    with pytest.raises(AssertionError, match="2 recommendations against 3"):
        assert_same_recommendations(one[:2], one)
    assert_same_recommendations([[], one], [[], one])


def test_a_beam_cut_near_a_tie_is_reported_at_its_step():
    """Two beams over four tokens, one prompt: the first step expands beam 0 alone, the second both kept beams, the
    last step is the final ranking's (not checked here)."""
    last = torch.zeros(2, 4)  # every candidate tied: the final ranking, assert_same_ranking's business

    def steps(first, second_of_beam_1):
        return (
            torch.tensor([first, [-INF] * 4]),
            torch.tensor([[-0.5, -1.5, -INF, -INF], second_of_beam_1]),
            last,
        )

    assert_beam_cuts_clear(steps([-1.0, -2.0, -3.0, -5.0], [-0.1, -3.0, -INF, -INF]), beams=2)
    with pytest.raises(AssertionError, match=r"step 0: the beam cut of prompt 0 lies 0\.0001 from a tie"):
        assert_beam_cuts_clear(steps([-1.0, -2.0, -2.0001, -5.0], [-0.1, -3.0, -INF, -INF]), beams=2)
    # kept -1 and -2; candidates -1.5, -2.5 (beam 0) and -2.4999, -5 (beam 1): the cut falls between -2.4999 and -2.5
    with pytest.raises(AssertionError, match="step 1"):
        assert_beam_cuts_clear(steps([-1.0, -2.0, -3.0, -5.0], [-0.4999, -3.0, -INF, -INF]), beams=2)
    assert_beam_cuts_clear(steps([-1.0, -2.0, -3.0, -5.0], [-0.4999, -3.0, -INF, -INF]), beams=2, margin=1e-5)
    assert_beam_cuts_clear(steps([-1.0, -2.0, -INF, -INF], [-0.1, -INF, -INF, -INF]), beams=2)
