"""The paper's ID-quality scores: how well the token embeddings an ID scheme gives items serve recommendation.

Diversity asks whether items stay distinguishable; memorization whether items that users rate alike get similar
embeddings. Both measure the embeddings themselves, independently of any recommendation run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping

import numpy as np

__all__ = ["diversity_score", "item_id_embeddings", "memorization_score"]


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
