"""Tie-aware comparison of two top-k rankings, for tests that decode the same scores two ways.

Two code paths (or one path on two CPUs, whose kernels add up floats in other orders) give scores that agree only to
rounding. Items whose scores are tied within that rounding may then come in either order, and an item tied with the
last one kept may trade places with one just outside the top k; every other difference is a real one. Only the top k
of each side is known, so a difference in which items were kept is accepted only where the scores show the tie: the
items that one side holds and the other lacks must score within the tolerance of that side's last kept score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

import numpy as np
import torch

INF = float("inf")


def assert_same_ranking(items_a, scores_a, items_b, scores_b, *, atol: float = 1e-4, rtol: float = 0.0) -> None:
    """Assert that two rankings (one row per prompt, or one row) agree up to ties.

    ``items_*``: item numbers or names, (rows, k) or (k,); ``scores_*``: their scores, best first, padded with
    ``-inf`` (and any placeholder item, e.g. -1) where fewer than k items were left. The scores must agree position by
    position to ``atol + rtol * |score|``; the items must be equal, except that neighbours tied within that
    tolerance (on either side) may come in any order, and items tied with the last kept slot of a full list may be
    another tied item."""
    single = torch.as_tensor(scores_a).dim() == 1
    scores_a, scores_b = _score_matrix(scores_a), _score_matrix(scores_b)
    rows_a, rows_b = _item_rows(items_a, single), _item_rows(items_b, single)
    torch.testing.assert_close(scores_a, scores_b, atol=atol, rtol=rtol, msg=lambda m: f"scores differ: {m}")
    assert len(rows_a) == len(rows_b) == scores_a.shape[0], (
        f"{len(rows_a)} and {len(rows_b)} item rows for {scores_a.shape[0]} score rows"
    )
    k = scores_a.shape[1]
    for row, (a, b) in enumerate(zip(rows_a, rows_b, strict=True)):
        assert len(a) == len(b) == k, f"row {row}: {len(a)} and {len(b)} items for k={k}"
        _assert_same_row(row, a, scores_a[row].tolist(), b, scores_b[row].tolist(), atol, rtol)


def assert_same_recommendations(got, expected, *, atol: float = 1e-4, rtol: float = 0.0) -> None:
    """``assert_same_ranking`` for ``recommend`` output: a list of (item, score) pairs, or a list of such lists."""
    rows_got, rows_expected = _pair_rows(got), _pair_rows(expected)
    assert len(rows_got) == len(rows_expected), f"{len(rows_got)} lists against {len(rows_expected)}"
    for row, (a, b) in enumerate(zip(rows_got, rows_expected, strict=True)):
        assert len(a) == len(b), f"list {row}: {len(a)} recommendations against {len(b)}"
        assert_same_ranking(
            [[item for item, _ in a]],
            [[score for _, score in a]],
            [[item for item, _ in b]],
            [[score for _, score in b]],
            atol=atol,
            rtol=rtol,
        )


def _assert_same_row(row, items_a, scores_a, items_b, scores_b, atol, rtol) -> None:
    k = len(scores_a)

    def tolerance(x: float, y: float) -> float:
        return atol + rtol * max(abs(x), abs(y))

    def tied(scores, j) -> bool:
        x, y = scores[j], scores[j + 1]
        return bool(np.isfinite(x) and np.isfinite(y) and abs(x - y) <= tolerance(x, y))

    def show(lo, hi) -> str:
        return (
            f"row {row}, positions {lo}..{hi - 1}: {list(items_a[lo:hi])} (scores {scores_a[lo:hi]}) against "
            f"{list(items_b[lo:hi])} (scores {scores_b[lo:hi]})"
        )

    start = 0
    for end in range(1, k + 1):
        if end < k and (tied(scores_a, end - 1) or tied(scores_b, end - 1)):
            continue  # the block of tied neighbours goes on
        block_a, block_b = items_a[start:end], items_b[start:end]
        if not np.isfinite(scores_a[start]):  # padding: no item was left to rank, the placeholders agree
            assert list(block_a) == list(block_b), f"padding differs at {show(start, end)}"
        elif end < k or not np.isfinite(scores_a[-1]) or not np.isfinite(scores_b[-1]):
            assert Counter(block_a) == Counter(block_b), f"different items at {show(start, end)}"
        else:  # the tail of a full list: an item tied with the last kept one may be another tied item
            for items, other, scores in ((block_a, block_b, scores_a), (block_b, block_a, scores_b)):
                for offset, item in enumerate(items):
                    score = scores[start + offset]
                    assert item in other or abs(score - scores[-1]) <= tolerance(score, scores[-1]), (
                        f"item {item!r} is kept on one side only and is not tied with the last kept item at "
                        f"{show(start, end)}"
                    )
        start = end


def _score_matrix(scores) -> torch.Tensor:
    matrix = torch.as_tensor(scores).detach().cpu().to(torch.float64)
    matrix = matrix.unsqueeze(0) if matrix.dim() == 1 else matrix
    assert matrix.dim() == 2, f"scores must be (rows, k) or (k,), not {tuple(matrix.shape)}"
    return matrix


def _item_rows(items, single: bool) -> list[list[Hashable]]:
    items = items.tolist() if isinstance(items, torch.Tensor | np.ndarray) else items
    return [list(items)] if single else [list(row) for row in items]


def _pair_rows(recommendations) -> list[list]:
    """One ``recommend`` list (pairs whose first element is an item) or ``recommend_batch``'s list of them."""
    one_list = all(
        isinstance(pair, tuple | list) and len(pair) == 2 and not isinstance(pair[0], tuple | list)
        for pair in recommendations
    )
    return [list(recommendations)] if one_list else [list(row) for row in recommendations]


def assert_beam_cuts_clear(step_log_probs: tuple[torch.Tensor, ...], beams: int, margin: float = 1e-3) -> None:
    """Assert that no cut a beam search made before its last step fell within ``margin`` of a tie: a property of the
    fixture that a parity test against ``generate`` needs.

    ``step_log_probs``: ``generate``'s ``scores`` (one (prompts x beams, vocabulary) tensor of processed
    log-probabilities per step). Where the last kept and the first dropped candidate are tied within rounding, two
    code paths (or two CPUs) may keep different beams, and their lists then differ by more than a swap of tied items,
    which ``assert_same_ranking`` cannot tell from a real difference. The last step's cut is the final ranking's."""
    running = None
    for step, log_probs in enumerate(step_log_probs[:-1]):
        log_probs = log_probs.detach().double().view(-1, beams, log_probs.shape[-1])
        # the first step expands the first beam only (the others start at -1e9)
        candidates = log_probs[:, 0] if running is None else (log_probs + running[:, :, None]).flatten(1)
        best = candidates.topk(min(beams + 1, candidates.shape[1]), dim=-1).values
        if best.shape[1] > beams:
            gaps = best[:, beams - 1] - best[:, beams]
            close = torch.isfinite(best[:, beams]) & (gaps <= margin)
            assert not close.any(), (
                f"step {step}: the beam cut of prompt {int(close.nonzero()[0])} lies {float(gaps[close][0]):.2g} "
                f"from a tie (within {margin}); which beams survive then depends on rounding: choose a fixture "
                "whose candidates are further apart"
            )
        running = best[:, :beams]
