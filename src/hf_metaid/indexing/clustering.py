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


def assign_and_rank(vectors: np.ndarray, centroids: np.ndarray, priority: np.ndarray | None = None) -> np.ndarray:
    """``int64 (n, 2)`` (cluster, rank): nearest centroid by cosine, then rank by ascending cosine distance to it.

    With ``priority`` (one number per point, e.g. its interaction count), members rank by descending priority first
    and by distance among equals: rank token r then means "the r-th most popular member" in every cluster.
    Ties go to the lower cluster index, and equal distances inside a cluster to the lower entity index, so the
    codes are a deterministic function of the inputs.
    """
    points = normalize_rows(vectors)
    centroids = normalize_rows(centroids)
    count = points.shape[0]
    cluster = np.empty(count, dtype=np.int64)
    similarity = np.empty(count, dtype=np.float32)
    for start in range(0, count, _ASSIGN_CHUNK):
        scores = points[start : start + _ASSIGN_CHUNK] @ centroids.T
        best = scores.argmax(axis=1)
        cluster[start : start + _ASSIGN_CHUNK] = best
        similarity[start : start + _ASSIGN_CHUNK] = scores[np.arange(len(best)), best]
    index = np.arange(count)
    keys = (index, -similarity, cluster) if priority is None else (index, -similarity, -np.asarray(priority), cluster)
    order = np.lexsort(keys)  # by cluster, [highest priority first,] most similar first, then entity index
    sorted_cluster = cluster[order]
    group_start = np.searchsorted(sorted_cluster, sorted_cluster, side="left")
    rank = np.empty(count, dtype=np.int64)
    rank[order] = np.arange(count) - group_start
    return np.stack([cluster, rank], axis=1)


def cluster_and_rank(
    vectors: np.ndarray, num_clusters: int, iterations: int = 25, seed: int = 0, priority: np.ndarray | None = None
) -> Clustering:
    """Spherical k-means then :func:`assign_and_rank`: the two-level codes of one set of points."""
    centroids = spherical_kmeans(vectors, num_clusters, iterations, seed)
    return Clustering(codes=assign_and_rank(vectors, centroids, priority), centroids=centroids)
