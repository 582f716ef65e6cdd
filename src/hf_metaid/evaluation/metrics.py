"""Full-ranking recommendation metrics, as plain numpy functions.

They follow the full-ranking protocol of the paper: each user has exactly one held-out target item and a ranked list
of recommended item ids (no sampled negatives), so

* ``HR@k``   = 1 if the target is among the first ``k`` entries, else 0;
* ``NDCG@k`` = ``1 / log2(rank + 2)`` when the target sits at 0-based position ``rank < k``, else 0 (with one
  relevant item the ideal DCG is 1, so DCG is already normalised);
* ``MRR@k``  = ``1 / (rank + 1)`` under the same cut-off;

each averaged over users. Given each user's history, :class:`MetricAccumulator` also reports

* ``seen@k`` = the share of the first ``k`` entries that are items of the user's own history: under a protocol
  that keeps them in the ranking, the slots a model spends on what the user already has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from numbers import Integral

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["DEFAULT_KS", "MetricAccumulator", "exclude_seen", "rank_of_target", "ranking_metrics"]

# The cut-offs reported unless asked otherwise (the paper's HR/NDCG@5 and @10).
DEFAULT_KS = (5, 10)


def rank_of_target(recommended: Sequence[Sequence[str]], targets: Sequence[str]) -> np.ndarray:
    """0-based position of each user's target in their recommended list, ``-1`` when it is absent.

    The first occurrence counts, so a list that repeats an item is not rewarded twice (repeats are reported by
    :func:`ranking_metrics` as invalid entries instead).
    """
    _check_same_length(recommended, targets, "recommended", "targets")
    ranks = np.full(len(targets), -1, dtype=np.int64)
    for user, (items, target) in enumerate(zip(recommended, targets, strict=True)):
        for position, item in enumerate(items):
            if item == target:
                ranks[user] = position
                break
    return ranks


class MetricAccumulator:
    """Collects batches of recommendations and computes :func:`ranking_metrics` over all of them at the end.

    Only one rank per user and two counters are kept, not the lists themselves, so an evaluation loop can stream
    over a large test set. The result is identical to calling :func:`ranking_metrics` on the concatenated lists.

    Args:
        ks: cut-offs, each a positive integer.
        valid_items: the catalogue; recommended entries outside it count towards ``invalid_rate``.
    """

    def __init__(self, ks: Iterable[int] = DEFAULT_KS, valid_items: Collection[str] | None = None) -> None:
        self.ks = _check_ks(ks)
        if isinstance(valid_items, (str, bytes)):  # set() would make it a set of characters
            raise InvalidArgumentError(f"valid_items must be a collection of item ids, got {valid_items!r:.80}")
        self.valid_items = None if valid_items is None else set(valid_items)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far (keeps ``ks`` and ``valid_items``)."""
        self._ranks: list[np.ndarray] = []
        self._invalid = 0
        self._entries = 0
        self._seen: list[np.ndarray] = []  # per batch given histories: (users, max(ks)) bool, a history item there

    @property
    def num_users(self) -> int:
        return sum(len(r) for r in self._ranks)

    def add(
        self,
        recommended_batch: Sequence[Sequence[str]],
        targets_batch: Sequence[str],
        histories_batch: Sequence[Iterable[str]] | None = None,
    ) -> MetricAccumulator:
        """Add one batch: a ranked list of item ids per user and each user's single target item; with each user's
        history items (``histories_batch``, for every batch or none), ``compute`` also reports ``seen@k``."""
        _check_same_length(recommended_batch, targets_batch, "recommended", "targets")
        depth = max(self.ks)
        # Entries past the largest cut-off never enter a metric, so they are not judged for validity either.
        truncated = [list(items)[:depth] for items in recommended_batch]
        if (histories_batch is None) != (not self._seen) and self._ranks:
            raise InvalidArgumentError("histories must be given with every batch or with none")
        seen = None
        if histories_batch is not None:
            _check_same_length(recommended_batch, histories_batch, "recommended", "histories")
            seen = np.zeros((len(truncated), depth), dtype=bool)
            for row, (items, history) in enumerate(zip(truncated, histories_batch, strict=True)):
                if isinstance(history, (str, bytes)):  # set() would make it a set of characters
                    raise InvalidArgumentError(f"histories[{row}] must be a list of item ids, got {history!r:.80}")
                history = set(history)
                seen[row, : len(items)] = [item in history for item in items]
        ranks = rank_of_target(truncated, targets_batch)
        invalid, entries = _count_invalid(truncated, self.valid_items)
        self._ranks.append(ranks)
        if seen is not None:
            self._seen.append(seen)
        self._invalid += invalid
        self._entries += entries
        return self

    def target_ranks(self) -> np.ndarray:
        """The 0-based position of each added user's target in their list (``-1``: not in the first ``max(ks)``),
        in the order added: per-user outcomes, e.g. for the standard error of a difference between two models
        evaluated on the same users."""
        return np.concatenate(self._ranks) if self._ranks else np.zeros(0, dtype=np.int64)

    def compute(self) -> dict[str, float]:
        """The metrics over every user added so far; see :func:`ranking_metrics` for the keys."""
        if not self._ranks or self.num_users == 0:
            raise ValueError("no users to evaluate: add at least one (recommended, target) pair before compute()")
        ranks = self.target_ranks()
        result: dict[str, float] = {}
        found = ranks >= 0
        for k in self.ks:
            hit = found & (ranks < k)
            safe = np.where(hit, ranks, 0)
            result[f"hr@{k}"] = float(hit.mean())
            result[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0).mean())
            result[f"mrr@{k}"] = float(np.where(hit, 1.0 / (safe + 1.0), 0.0).mean())
        result["invalid_rate"] = self._invalid / self._entries if self._entries else 0.0
        result["num_users"] = float(len(ranks))
        if self._seen:  # the share of the top-k slots spent on the user's own history items
            seen = np.concatenate(self._seen)
            result.update({f"seen@{k}": float(seen[:, :k].sum(axis=1).mean() / k) for k in self.ks})
        return result


def ranking_metrics(
    recommended: Sequence[Sequence[str]],
    targets: Sequence[str],
    ks: Iterable[int] = DEFAULT_KS,
    valid_items: Collection[str] | None = None,
) -> dict[str, float]:
    """Full-ranking HR@k, NDCG@k and MRR@k for one held-out target per user.

    Args:
        recommended: one ranked list of item ids per user, best first. Lists shorter than ``k`` are fine (a
            missing position is a miss), which is what a constrained decoder returns when fewer items are valid.
        targets: the held-out item of each user.
        ks: cut-offs, e.g. ``(5, 10)``.
        valid_items: the item catalogue. A generative recommender can emit ids that name no item; those entries
            count towards ``invalid_rate``.

    Returns:
        ``{"hr@5", "ndcg@5", "mrr@5", ..., "invalid_rate", "num_users"}``. ``invalid_rate`` is the share of the
        judged entries (the first ``max(ks)`` of each list) that are a repeat of an earlier entry in the same list
        or, when ``valid_items`` is given, not in the catalogue. Repeats are always counted, since a ranking that
        spends a slot on the same item twice loses a chance at a hit either way.

    Raises:
        ValueError: ``recommended`` and ``targets`` differ in length, ``ks`` is empty or holds a non-positive
            cut-off, or there are no users.
    """
    return MetricAccumulator(ks, valid_items).add(recommended, targets).compute()


def exclude_seen(recommended: Sequence[Sequence[str]], histories: Sequence[Iterable[str]], k: int) -> list[list[str]]:
    """Drop each user's already-interacted items from their list, keep the order, truncate to ``k``.

    The paper's protocol ranks the full catalogue, seen items included; this supports the common alternative in
    which items from the user's history are removed before cutting the list (decode more than ``k`` candidates
    first, so that ``k`` remain).
    """
    _check_same_length(recommended, histories, "recommended", "histories")
    if isinstance(k, bool) or not isinstance(k, Integral) or k <= 0:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    filtered = []
    for items, history in zip(recommended, histories, strict=True):
        seen = set(history)
        filtered.append([item for item in items if item not in seen][: int(k)])
    return filtered


# ---------------------------------------------------------------------------------------------------- internals
def _check_same_length(first: Sequence, second: Sequence, first_name: str, second_name: str) -> None:
    for name, value in ((first_name, first), (second_name, second)):
        if isinstance(value, (str, bytes)):  # it would be read one character per user
            raise InvalidArgumentError(f"{name} must have one entry per user, got the string {value!r:.80}")
    if len(first) != len(second):
        raise InvalidArgumentError(
            f"{first_name} and {second_name} must have one entry per user, got {len(first)} and {len(second)}"
        )


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    if isinstance(ks, (str, bytes)) or not isinstance(ks, (Integral, Iterable)):
        raise InvalidArgumentError(f"ks must be a cut-off or a list of them, e.g. ks=(5, 10), got {ks!r}")
    values = (ks,) if isinstance(ks, Integral) else tuple(ks)
    if not values:
        raise InvalidArgumentError("ks must hold at least one cut-off, e.g. ks=(5, 10)")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, Integral) or k <= 0:
            raise InvalidArgumentError(f"every cut-off in ks must be a positive integer, got {k!r}")
    return tuple(sorted({int(k) for k in values}))


def _count_invalid(lists: Sequence[Sequence[str]], valid_items: set | None) -> tuple[int, int]:
    invalid = entries = 0
    for items in lists:
        seen: set = set()
        for item in items:
            entries += 1
            if item in seen or (valid_items is not None and item not in valid_items):
                invalid += 1
            seen.add(item)
    return invalid, entries
