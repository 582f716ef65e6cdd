"""Spherical k-means (FAISS) and within-cluster ranks: vectors → (cluster, rank) codes.

An entity's META ID is its cluster token plus its rank token. Vectors are compared by cosine, so they are
L2-normalised and clustered with FAISS spherical k-means (it scales to millions of points); every point then goes to
its nearest normalised centroid, and inside a cluster members are ranked by ascending cosine distance to the centroid
(rank 0 = closest, ties broken by entity index), so similar entities share a cluster token and central ones get small
rank numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ASSIGN_CHUNK = 65536  # rows scored against the centroids at once: bounded memory for any number of points


@dataclass(frozen=True)
class Clustering:
    """Result of :func:`cluster_and_rank` over ``n`` points.

    Attributes:
        codes: ``int64 (n, 2)``: (cluster, rank) per point; unique pairs.
        centroids: ``float32 (num_clusters, dim)`` unit-norm centroids (a cluster may end up empty).
    """

    codes: np.ndarray
    centroids: np.ndarray

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as ``float32``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def spherical_kmeans(vectors: np.ndarray, num_clusters: int, iterations: int = 25, seed: int = 0) -> np.ndarray:
    """FAISS spherical k-means on the normalised ``vectors``; returns unit-norm ``float32`` centroids.

    ``num_clusters`` is capped at the number of points. Every point takes part in training (FAISS would otherwise
    subsample to 256 points per centroid).
    """
    import faiss

    points = np.ascontiguousarray(normalize_rows(vectors))
    count, dim = points.shape
    if count == 0:
        raise ValueError("cannot cluster zero points")
    k = max(1, min(int(num_clusters), count))
    kmeans = faiss.Kmeans(dim, k, niter=int(iterations), seed=int(seed), spherical=True, verbose=False)
    kmeans.cp.max_points_per_centroid = max(1, -(-count // k))  # use all points
    kmeans.cp.min_points_per_centroid = 1  # small inputs are fine: no warning
    kmeans.train(points)
    return normalize_rows(kmeans.centroids.reshape(k, dim))


def assign_and_rank(
    vectors: np.ndarray,
    centroids: np.ndarray,
    priority: np.ndarray | None = None,
    max_size: int | None = None,
    iterations: int = 25,
    seed: int = 0,
) -> Clustering:
    """(cluster, rank) codes: nearest centroid by cosine, then rank by ascending cosine distance to it.

    With ``priority`` (one number per point, e.g. its interaction count), members rank by descending priority first
    and by distance among equals: rank token r then means "the r-th most popular member" in every cluster.
    With ``max_size``, a cluster that would hold more points is split by :func:`split_oversized`: the rank tokens then
    number at most ``max_size`` however skewed the clusters come out, and the new clusters' centroids follow the
    given ones. Ties go to the lower cluster index, and equal distances inside a cluster to the lower entity index, so
    the codes are a deterministic function of the inputs.
    """
    points = normalize_rows(vectors)
    centroids = normalize_rows(centroids)
    cluster, similarity = _nearest(points, centroids)
    if max_size is not None and len(cluster) and np.bincount(cluster).max() > max_size:  # else: codes as without it
        cluster, centroids = split_oversized(points, cluster, centroids, max_size, iterations, seed)
        similarity = np.einsum("ij,ij->i", points, centroids[cluster]).astype(np.float32)
    count = points.shape[0]
    index = np.arange(count)
    keys = (index, -similarity, cluster) if priority is None else (index, -similarity, -np.asarray(priority), cluster)
    order = np.lexsort(keys)  # by cluster, [highest priority first,] most similar first, then entity index
    sorted_cluster = cluster[order]
    group_start = np.searchsorted(sorted_cluster, sorted_cluster, side="left")
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count) - group_start
    return Clustering(codes=np.stack([cluster, rank], axis=1), centroids=centroids)


def _nearest(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the index of its most similar centroid (ties: the lower index) and that cosine similarity."""
    count = points.shape[0]
    cluster = np.empty(count, dtype=np.int64)
    similarity = np.empty(count, dtype=np.float32)
    for start in range(0, count, _ASSIGN_CHUNK):
        scores = points[start : start + _ASSIGN_CHUNK] @ centroids.T
        best = scores.argmax(axis=1)
        cluster[start : start + _ASSIGN_CHUNK] = best
        similarity[start : start + _ASSIGN_CHUNK] = scores[np.arange(len(best)), best]
    return cluster, similarity


def split_oversized(
    points: np.ndarray, cluster: np.ndarray, centroids: np.ndarray, max_size: int, iterations: int = 25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split every cluster of more than ``max_size`` points by k-means on its members into ``ceil(size / max_size)``
    parts, again until none is too large; returns the new assignment and the centroid table (the old rows, the first
    part of a split cluster in its old row, the other parts appended in order).

    Why: the rank tokens number as many as the largest cluster holds, and on logs whose vectors separate poorly one
    cluster can take most entities (tens of thousands of rank tokens, a vocabulary too wide to train). Where k-means
    cannot separate the members (identical vectors), they are cut in order of similarity to the centroid.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    cluster = cluster.copy()
    table = list(normalize_rows(centroids))
    pending = [c for c in range(len(table)) if np.sum(cluster == c) > max_size]
    while pending:
        target = pending.pop(0)
        members = np.flatnonzero(cluster == target)
        parts = -(-len(members) // max_size)
        sub_centroids = spherical_kmeans(points[members], parts, iterations, seed)
        sub_cluster, _ = _nearest(points[members], sub_centroids)
        if np.bincount(sub_cluster, minlength=len(sub_centroids)).max() == len(members):  # no split: cut in order
            similarity = points[members] @ table[target]
            order = np.lexsort((members, -similarity))
            sub_cluster = np.empty(len(members), dtype=np.int64)
            sub_cluster[order] = np.arange(len(members)) // max_size
            sums = np.zeros((parts, points.shape[1]), np.float32)
            np.add.at(sums, sub_cluster, points[members])
            sub_centroids = normalize_rows(sums)
        used = [p for p in range(len(sub_centroids)) if np.any(sub_cluster == p)]
        ids = [target, *range(len(table), len(table) + len(used) - 1)]
        for new_id, part in zip(ids, used, strict=True):
            if new_id == target:
                table[target] = sub_centroids[part]
            else:
                table.append(sub_centroids[part])
            cluster[members[sub_cluster == part]] = new_id
            if np.sum(sub_cluster == part) > max_size:
                pending.append(new_id)
    return cluster, np.stack(table).astype(np.float32)


def cluster_and_rank(
    vectors: np.ndarray,
    num_clusters: int,
    iterations: int = 25,
    seed: int = 0,
    priority: np.ndarray | None = None,
    *,
    coded: np.ndarray | None = None,
    max_size: int | None = None,
) -> Clustering:
    """Spherical k-means then :func:`assign_and_rank`: the two-level codes of one set of points.

    ``coded`` (row indices) selects the points that get codes: the centroids are trained on all points (the users
    shape the item clusters even where users get no IDs), the codes, ranks and ``max_size`` count the selected ones.
    """
    centroids = spherical_kmeans(vectors, num_clusters, iterations, seed)
    if coded is not None:
        vectors = vectors[coded]
        priority = None if priority is None else np.asarray(priority)[coded]
    return assign_and_rank(vectors, centroids, priority, max_size, iterations, seed)
