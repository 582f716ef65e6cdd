"""META ID: meta-path walks → skip-gram vectors → spherical k-means → (cluster, rank) IDs.

Users and items get vectors in one space from the training interactions only (walks on the bipartite graph and
skip-gram, or a spectral embedding), are clustered together (or per type) with FAISS spherical k-means, and are
numbered inside their cluster by closeness to its centroid. Defaults were chosen on Beauty's validation split; see
``benchmarks/results/embedding_quality.md`` and ``benchmarks/results/index_speed.md``.
"""

from __future__ import annotations

import time

import datasets
import numpy as np

from .base import BaseIndexer, IndexedEntities
from .clustering import Clustering, cluster_and_rank, normalize_rows
from .graph import build_graph
from .skipgram import BACKENDS, skipgram_embeddings
from .spectral import spectral_embeddings
from .walks import metapath_walks

EMBEDDINGS = ("skipgram", "spectral")
RANK_ORDERS = ("distance", "degree")


class MetaIDIndexer(BaseIndexer):
    """META ID indexer.

    Args:
        num_clusters: K, the number of cluster tokens (capped at the number of entities). With ``joint=False`` an
            int gives each entity type K clusters; a ``(users, items)`` pair sets them apart.
        dim: vector size (64, like the released META ID centroids).
        seed: seed of walks, skip-gram, SVD start vector and k-means.
        embedding: ``"skipgram"`` (meta-path walks + SGNS, the method of the paper) or ``"spectral"`` (truncated SVD
            of the normalised adjacency: seconds instead of tens of seconds, for very large catalogues).
        joint: cluster users and items together (default; the released Beauty IDs are a joint clustering) or each
            type on its own, item cluster ids following the user ones.
        walks_per_node, walk_length: meta-path walks started from every user and every item.
        window, negatives, epochs: skip-gram context reach, negatives per positive pair, passes over the walks.
        backend: ``"torch"`` (vectorised, default) or ``"gensim"`` (reference ``Word2Vec``, optional dependency).
        learning_rate, batch_size, negative_pool: torch backend's Adam step, pairs per step, shared noise nodes per
            step.
        kmeans_iters: FAISS k-means iterations.
        rank_by: order inside a cluster: ``"distance"`` to the centroid (the paper's) or ``"degree"`` (interaction
            count in the training part, most first; distance among equals), which gives each rank token the same
            meaning in every cluster (low = popular), so a small model learns the rank step more easily.
    """

    scheme = "metaid"

    def __init__(
        self,
        num_clusters: int | tuple[int, int] = 100,
        dim: int = 64,
        seed: int = 0,
        embedding: str = "skipgram",
        joint: bool = True,
        walks_per_node: int = 5,
        walk_length: int = 20,
        window: int = 3,
        negatives: int = 5,
        epochs: int = 1,
        backend: str = "torch",
        learning_rate: float = 0.03,
        batch_size: int = 16384,
        negative_pool: int = 64,
        kmeans_iters: int = 25,
        rank_by: str = "distance",
    ) -> None:
        super().__init__(seed)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {embedding!r}; use one of {EMBEDDINGS}")
        if rank_by not in RANK_ORDERS:
            raise ValueError(f"unknown rank_by {rank_by!r}; use one of {RANK_ORDERS}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown skip-gram backend {backend!r}; use one of {BACKENDS}")
        clusters = tuple(num_clusters) if isinstance(num_clusters, (tuple, list)) else (num_clusters,)
        if len(clusters) not in (1, 2) or (joint and len(clusters) != 1) or min(int(k) for k in clusters) < 1:
            raise ValueError("num_clusters must be a positive int (or, with joint=False, a (users, items) pair)")
        for name, value in (
            ("dim", dim),
            ("walks_per_node", walks_per_node),
            ("walk_length", walk_length),
            ("window", window),
            ("negatives", negatives),
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("negative_pool", negative_pool),
            ("kmeans_iters", kmeans_iters),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        self.num_clusters = num_clusters
        self.dim = int(dim)
        self.embedding = embedding
        self.joint = bool(joint)
        self.walks_per_node = int(walks_per_node)
        self.walk_length = int(walk_length)
        self.window = int(window)
        self.negatives = int(negatives)
        self.epochs = int(epochs)
        self.backend = backend
        self.learning_rate = float(learning_rate)
        self.batch_size = int(batch_size)
        self.negative_pool = int(negative_pool)
        self.kmeans_iters = int(kmeans_iters)
        self.rank_by = rank_by

    def get_params(self) -> dict:
        """Constructor arguments, JSON-able (they go into the vocabulary's metadata)."""
        clusters = self.num_clusters
        return {
            "num_clusters": list(clusters) if isinstance(clusters, (tuple, list)) else int(clusters),
            "dim": self.dim,
            "seed": self.seed,
            "embedding": self.embedding,
            "joint": self.joint,
            "walks_per_node": self.walks_per_node,
            "walk_length": self.walk_length,
            "window": self.window,
            "negatives": self.negatives,
            "epochs": self.epochs,
            "backend": self.backend,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "negative_pool": self.negative_pool,
            "kmeans_iters": self.kmeans_iters,
            "rank_by": self.rank_by,
        }

    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        clock = time.perf_counter()
        graph = build_graph(train, self.user_column, self.item_column)
        clock = self._lap("graph_s", clock)
        if self.embedding == "skipgram":
            walks = metapath_walks(graph, self.walks_per_node, self.walk_length, self.seed)
            clock = self._lap("walks_s", clock)
            raw = skipgram_embeddings(
                walks,
                graph.num_nodes,
                dim=self.dim,
                window=self.window,
                negatives=self.negatives,
                epochs=self.epochs,
                seed=self.seed,
                backend=self.backend,
                learning_rate=self.learning_rate,
                batch_size=self.batch_size,
                negative_pool=self.negative_pool,
            )
            del walks
            clock = self._lap("skipgram_s", clock)
        else:
            raw = spectral_embeddings(graph, self.dim, self.seed)
            clock = self._lap("spectral_s", clock)
        vectors = normalize_rows(raw)
        priority = graph.degrees if self.rank_by == "degree" else None
        codes, centroids, used = self._cluster(vectors, graph.num_users, priority)
        self._lap("kmeans_s", clock)
        metadata = {"params": self.get_params(), "clusters": used}
        return IndexedEntities(
            users=graph.users,
            items=graph.items,
            user_codes=codes[: graph.num_users],
            item_codes=codes[graph.num_users :],
            cluster_vectors=centroids,
            entity_vectors=vectors,
            metadata=metadata,
        )

    def _cluster(
        self, vectors: np.ndarray, num_users: int, priority: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Codes of all entities, the centroid table, and how many clusters each part really got."""
        clusters = self.num_clusters
        if self.joint:
            joint = cluster_and_rank(vectors, int(clusters), self.kmeans_iters, self.seed, priority)
            return joint.codes, joint.centroids, {"joint": joint.num_clusters}
        user_k, item_k = (clusters, clusters) if isinstance(clusters, int) else (int(k) for k in clusters)
        user_priority, item_priority = (
            (None, None) if priority is None else (priority[:num_users], priority[num_users:])
        )
        parts: list[Clustering] = [
            cluster_and_rank(vectors[:num_users], user_k, self.kmeans_iters, self.seed, user_priority),
            cluster_and_rank(vectors[num_users:], item_k, self.kmeans_iters, self.seed, item_priority),
        ]
        users, items = parts
        item_codes = items.codes.copy()
        item_codes[:, 0] += users.num_clusters  # item cluster ids follow the user ones: IDs stay unique
        codes = np.concatenate([users.codes, item_codes])
        centroids = np.concatenate([users.centroids, items.centroids])
        return codes, centroids, {"users": users.num_clusters, "items": items.num_clusters}

    def _lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings_[name] = now - since
        return now
