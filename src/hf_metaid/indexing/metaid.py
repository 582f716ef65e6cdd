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

from .base import ConfiguredIndexer, IndexedEntities
from .clustering import Clustering, cluster_and_rank, normalize_rows
from .config import MetaIDIndexerConfig
from .graph import build_graph
from .skipgram import skipgram_embeddings
from .spectral import spectral_embeddings
from .walks import metapath_walks


class MetaIDIndexer(ConfiguredIndexer[MetaIDIndexerConfig]):
    """META ID indexer.

    ``MetaIDIndexer(config)`` with a :class:`~hf_metaid.indexing.MetaIDIndexerConfig`, or the same settings as
    keywords (``MetaIDIndexer(num_clusters=100, embedding="spectral")``), or both: keywords replace the config's
    fields. The config documents every setting (K, vector size, embedding, joint or per-type clustering, walks,
    skip-gram, k-means, rank order); bad values raise ``ValueError`` naming the setting.
    """

    scheme = "metaid"
    config_class = MetaIDIndexerConfig

    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        clock = time.perf_counter()
        graph = build_graph(train, self.user_column, self.item_column)
        clock = self._lap("graph_s", clock)
        config = self.config
        if config.embedding == "skipgram":
            walks = metapath_walks(graph, config.walks_per_node, config.walk_length, config.seed)
            clock = self._lap("walks_s", clock)
            raw = skipgram_embeddings(walks, graph.num_nodes, config)
            del walks
            clock = self._lap("skipgram_s", clock)
        else:
            raw = spectral_embeddings(graph, config.dim, config.seed, config.svd_precision)
            clock = self._lap("spectral_s", clock)
        vectors = normalize_rows(raw)
        priority = graph.degrees if config.rank_by == "degree" else None
        codes, centroids, used = self._cluster(vectors, graph.num_users, priority)
        self._lap("kmeans_s", clock)
        metadata = {"params": self.get_params(), "clusters": used}
        return IndexedEntities.of_graph(graph, codes, centroids, entity_vectors=vectors, metadata=metadata)

    def _cluster(
        self, vectors: np.ndarray, num_users: int, priority: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Codes of all entities, the centroid table, and how many clusters each part really got."""
        clusters, iterations, seed = self.config.num_clusters, self.config.kmeans_iters, self.config.seed
        if self.config.joint:
            joint = cluster_and_rank(vectors, clusters, iterations, seed, priority)
            return joint.codes, joint.centroids, {"joint": joint.num_clusters}
        user_k, item_k = (clusters, clusters) if isinstance(clusters, int) else clusters
        user_priority, item_priority = (
            (None, None) if priority is None else (priority[:num_users], priority[num_users:])
        )
        parts: list[Clustering] = [
            cluster_and_rank(vectors[:num_users], user_k, iterations, seed, user_priority),
            cluster_and_rank(vectors[num_users:], item_k, iterations, seed, item_priority),
        ]
        users, items = parts
        item_codes = items.codes.copy()
        item_codes[:, 0] += users.num_clusters  # item cluster ids follow the user ones: IDs stay unique
        codes = np.concatenate([users.codes, item_codes])
        centroids = np.concatenate([users.centroids, items.centroids])
        return codes, centroids, {"users": users.num_clusters, "items": items.num_clusters}
