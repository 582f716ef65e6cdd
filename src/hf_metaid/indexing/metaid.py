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
from .clustering import cluster_and_rank, normalize_rows
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
        if config.user_ids:
            return IndexedEntities.of_graph(graph, codes, centroids, entity_vectors=vectors, metadata=metadata)
        return IndexedEntities(
            users=[],
            items=graph.items,
            user_codes=np.empty((0, 2), np.int64),
            item_codes=codes,
            cluster_vectors=centroids,
            entity_vectors=vectors[graph.num_users :],
            metadata={**metadata, "users_without_ids": graph.num_users},
            user_ids=False,
        )

    def _cluster(
        self, vectors: np.ndarray, num_users: int, priority: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Codes of the entities that get IDs (users then items, or items alone with ``user_ids=False``), the
        centroid table, and how many clusters each part really got (oversized ones split included)."""
        config = self.config
        settings = {"iterations": config.kmeans_iters, "seed": config.seed, "max_size": config.max_cluster_size}
        items = np.arange(num_users, vectors.shape[0])
        if config.joint:
            coded = None if config.user_ids else items
            joint = cluster_and_rank(vectors, config.num_clusters, priority=priority, coded=coded, **settings)
            return joint.codes, joint.centroids, {"joint": joint.num_clusters}
        user_k, item_k = (
            (config.num_clusters, config.num_clusters) if isinstance(config.num_clusters, int) else config.num_clusters
        )
        item_priority = None if priority is None else priority[num_users:]
        items_part = cluster_and_rank(vectors[num_users:], item_k, priority=item_priority, **settings)
        if not config.user_ids:
            return items_part.codes, items_part.centroids, {"items": items_part.num_clusters}
        user_priority = None if priority is None else priority[:num_users]
        users = cluster_and_rank(vectors[:num_users], user_k, priority=user_priority, **settings)
        item_codes = items_part.codes.copy()
        item_codes[:, 0] += users.num_clusters  # item cluster ids follow the user ones: IDs stay unique
        codes = np.concatenate([users.codes, item_codes])
        centroids = np.concatenate([users.centroids, items_part.centroids])
        return codes, centroids, {"users": users.num_clusters, "items": items_part.num_clusters}
