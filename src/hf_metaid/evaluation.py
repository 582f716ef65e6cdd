"""Recommendation metrics and the paper's ID-quality scores, as plain numpy functions.

Ranking metrics follow the full-ranking protocol of the paper: each user has exactly one held-out target item and a
ranked list of recommended item ids (no sampled negatives), so

* ``HR@k``   = 1 if the target is among the first ``k`` entries, else 0;
* ``NDCG@k`` = ``1 / log2(rank + 2)`` when the target sits at 0-based position ``rank < k``, else 0 (with one
  relevant item the ideal DCG is 1, so DCG is already normalised);
* ``MRR@k``  = ``1 / (rank + 1)`` under the same cut-off;

each averaged over users. The two ID-quality scores (diversity and memorization) measure the token embeddings an
ID scheme gives items, independently of any recommendation run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "MetricAccumulator",
    "diversity_score",
    "exclude_seen",
    "item_id_embeddings",
    "memorization_score",
    "rank_of_target",
    "ranking_metrics",
]

DEFAULT_KS = (5, 10)


# ------------------------------------------------------------------------------------------------ ranking metrics
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
        self.valid_items = None if valid_items is None else set(valid_items)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far (keeps ``ks`` and ``valid_items``)."""
        self._ranks: list[np.ndarray] = []
        self._invalid = 0
        self._entries = 0

    @property
    def num_users(self) -> int:
        return sum(len(r) for r in self._ranks)

    def add(self, recommended_batch: Sequence[Sequence[str]], targets_batch: Sequence[str]) -> MetricAccumulator:
        """Add one batch: a ranked list of item ids per user and each user's single target item."""
        _check_same_length(recommended_batch, targets_batch, "recommended", "targets")
        depth = max(self.ks)
        # Entries past the largest cut-off never enter a metric, so they are not judged for validity either.
        truncated = [list(items)[:depth] for items in recommended_batch]
        self._ranks.append(rank_of_target(truncated, targets_batch))
        invalid, entries = _count_invalid(truncated, self.valid_items)
        self._invalid += invalid
        self._entries += entries
        return self

    def compute(self) -> dict[str, float]:
        """The metrics over every user added so far; see :func:`ranking_metrics` for the keys."""
        if not self._ranks or self.num_users == 0:
            raise ValueError("no users to evaluate: add at least one (recommended, target) pair before compute()")
        ranks = np.concatenate(self._ranks)
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
    if int(k) != k or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    filtered = []
    for items, history in zip(recommended, histories, strict=True):
        seen = set(history)
        filtered.append([item for item in items if item not in seen][: int(k)])
    return filtered


# ---------------------------------------------------------------------------------------------- ID-quality scores
def item_id_embeddings(token_embeddings: np.ndarray, item_token_ids: np.ndarray) -> np.ndarray:
    """One vector per item: the mean of the embedding rows of the tokens that spell its ID.

    An ID such as ``<CT3><R17>`` is several tokens; the mean treats them alike and keeps the vector in the same
    space (and scale) as a single token, so items with one or several ID tokens are compared on equal terms.
    """
    table = np.asarray(token_embeddings, dtype=np.float64)
    ids = np.asarray(item_token_ids)
    if table.ndim != 2:
        raise ValueError(f"token_embeddings must be 2-D (vocab, dim), got shape {table.shape}")
    if ids.ndim == 1:
        ids = ids[:, None]
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"item_token_ids must be an integer array (num_items, tokens_per_item), got {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(f"item_token_ids must index rows of token_embeddings, i.e. lie in [0, {table.shape[0]})")
    return table[ids].mean(axis=1)


def diversity_score(
    token_embeddings: np.ndarray,
    item_token_ids: np.ndarray,
    num_pairs: int = 10_000,
    seed: int = 0,
) -> float:
    """The paper's Diversity Score: how distinguishable the items' ID embeddings are from one another.

    Each item's ID embedding (see :func:`item_id_embeddings`: the mean of its token rows) is turned into a
    distribution over embedding dimensions with a softmax; for random pairs of distinct items the symmetric KL
    divergence ``KL(p || q) + KL(q || p)`` is computed, and the score is its mean. Identical ID embeddings score 0;
    IDs that the model can tell apart score higher. Under in-vocabulary IDs many items share most of their tokens,
    which is the collapse this score exposes.

    Args:
        token_embeddings: ``(vocab, dim)`` input-embedding matrix (e.g. ``model.get_input_embeddings().weight``).
        item_token_ids: ``(num_items, tokens_per_item)`` token ids that spell each item's ID.
        num_pairs: pairs to sample; when the catalogue has no more distinct pairs than this, every pair is used
            exactly once instead.
        seed: seed of the pair sampling, so the score is reproducible.
    """
    vectors = item_id_embeddings(token_embeddings, item_token_ids)
    left, right = _sample_pairs(len(vectors), num_pairs, seed)
    log_p = _log_softmax(vectors)
    diff_log = log_p[left] - log_p[right]
    diff_p = np.exp(log_p[left]) - np.exp(log_p[right])
    # KL(p||q) + KL(q||p) = sum (p - q)(log p - log q): one pass, and never negative term by term.
    symmetric_kl = (diff_p * diff_log).sum(axis=1)
    return float(symmetric_kl.mean())


def memorization_score(
    item_embeddings: Mapping[Hashable, np.ndarray],
    ratings: Mapping[Hashable, Mapping[Hashable, float]],
    num_pairs: int = 10_000,
    seed: int = 0,
) -> float:
    """The paper's Memorization Score: do ID embeddings place together the items that users rate alike?

    Rating-based similarity of two items is the cosine of their rating vectors over users (a user who did not rate
    an item contributes 0); embedding similarity is the cosine of the items' ID embeddings. The score is the
    Spearman rank correlation of the two similarities over random item pairs, so it is 1 when the embeddings order
    pairs exactly as the ratings do and about 0 when they carry no rating information.

    The Beauty interactions shipped with this package hold no ratings (only who interacted with what), so this
    score is exercised on a small rated fixture in the tests; it applies as is to rated data (e.g. the Amazon
    review files with their star ratings).

    Args:
        item_embeddings: ``{item: vector}``, e.g. built with :func:`item_id_embeddings`.
        ratings: ``{user: {item: rating}}``.
        num_pairs: pairs to sample among items that have both an embedding and at least one rating; when there
            are no more distinct pairs than this, every pair is used exactly once.
        seed: seed of the pair sampling.

    Returns:
        The Spearman correlation, or ``nan`` when either similarity is constant over the pairs (it is undefined).
    """
    import scipy.sparse
    from scipy.stats import spearmanr

    rated = {item for user_ratings in ratings.values() for item in user_ratings}
    items = [item for item in item_embeddings if item in rated]
    if len(items) < 2:
        raise ValueError("memorization_score needs at least two items that have both an embedding and a rating")
    item_index = {item: i for i, item in enumerate(items)}
    rows, cols, values = [], [], []
    for user_col, user_ratings in enumerate(ratings.values()):
        for item, rating in user_ratings.items():
            if item in item_index:
                rows.append(item_index[item])
                cols.append(user_col)
                values.append(float(rating))
    matrix = scipy.sparse.csr_matrix((values, (rows, cols)), shape=(len(items), len(ratings)), dtype=np.float64)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    matrix = scipy.sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix

    embeddings = np.stack([np.asarray(item_embeddings[item], dtype=np.float64).ravel() for item in items])
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)

    left, right = _sample_pairs(len(items), num_pairs, seed)
    rating_similarity = np.asarray(matrix[left].multiply(matrix[right]).sum(axis=1)).ravel()
    embedding_similarity = (embeddings[left] * embeddings[right]).sum(axis=1)
    # Round away float noise so that equal similarities tie in the ranking instead of being ordered by rounding error.
    rating_similarity = np.round(rating_similarity, 10)
    embedding_similarity = np.round(embedding_similarity, 10)
    if np.ptp(rating_similarity) == 0 or np.ptp(embedding_similarity) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        correlation = spearmanr(rating_similarity, embedding_similarity).statistic
    return float(correlation)


# ---------------------------------------------------------------------------------------------------- internals
def _check_same_length(first: Sequence, second: Sequence, first_name: str, second_name: str) -> None:
    if len(first) != len(second):
        raise ValueError(
            f"{first_name} and {second_name} must have one entry per user, got {len(first)} and {len(second)}"
        )


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    values = (ks,) if isinstance(ks, int) else tuple(ks)
    if not values:
        raise ValueError("ks must hold at least one cut-off, e.g. ks=(5, 10)")
    for k in values:
        if isinstance(k, bool) or int(k) != k or k <= 0:
            raise ValueError(f"every cut-off in ks must be a positive integer, got {k!r}")
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


def _sample_pairs(count: int, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(i, j)`` with ``i != j``: all of them when few enough, else ``num_pairs`` drawn with a seed."""
    if count < 2:
        raise ValueError(f"need at least two items to form pairs, got {count}")
    if int(num_pairs) != num_pairs or num_pairs <= 0:
        raise ValueError(f"num_pairs must be a positive integer, got {num_pairs!r}")
    if count * (count - 1) // 2 <= num_pairs:
        left, right = np.triu_indices(count, k=1)
        return left.astype(np.int64), right.astype(np.int64)
    rng = np.random.default_rng(seed)
    left = rng.integers(0, count, size=int(num_pairs))
    right = (left + rng.integers(1, count, size=int(num_pairs))) % count  # uniform over the other items
    return left, right


def _log_softmax(matrix: np.ndarray) -> np.ndarray:
    shifted = matrix - matrix.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
