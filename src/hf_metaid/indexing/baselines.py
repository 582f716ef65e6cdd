"""Non-semantic ID schemes (OpenP5's sequential and random indexing, and independent IDs), to compare META ID against.

They show that the indexer interface carries any ID scheme: all number the training entities ``0 .. n-1`` (users
then items) and write number ``m`` as the two tokens (cluster ``m // block``, rank ``m % block``). The vectors behind
their tokens carry no meaning: seeded random unit vectors.

Independent IDs (IID, one new token per entity) are the block scheme with blocks of one: entity ``m`` is
(cluster ``m``, rank 0). The library's IDs always have two tokens, so an IID is one distinctive token followed by the
same rank token ``<R0>`` for every entity, which the model learns to write after any cluster token; the decoder,
the item tree and the tokenizer need nothing special for it. The new tokens number users + items + 1 (about 34,500 on
Beauty), plus the cold-start ranks where the catalogue holds entities unseen in training.
"""

from __future__ import annotations

import math

import datasets
import numpy as np

from ..entity_vocabulary import random_unit_vectors
from .base import ConfiguredIndexer, IndexedEntities
from .config import BlockIndexerConfig, IndependentIndexerConfig
from .graph import build_graph


class _BlockIndexer(ConfiguredIndexer[BlockIndexerConfig]):
    """Number entities, then split each number into (block, offset) tokens."""

    config_class = BlockIndexerConfig

    def _block_size(self, count: int) -> int:
        """Ranks per cluster token for ``count`` entities."""
        return self.config.block_size or max(1, math.ceil(math.sqrt(count)))

    def _numbers(self, count: int) -> np.ndarray:
        """The number given to each of ``count`` entities (users first, then items, first-appearance order)."""
        raise NotImplementedError

    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        graph = build_graph(train, self.user_column, self.item_column)
        count = graph.num_nodes
        block = self._block_size(count)
        numbers = self._numbers(count)
        codes = np.stack([numbers // block, numbers % block], axis=1).astype(np.int64)
        num_clusters = -(-count // block)
        cluster_vectors = random_unit_vectors(num_clusters, self.config.dim, self.config.seed, stream=0x434C5553)
        metadata = {"params": self.get_params(), "block": block}
        return IndexedEntities.of_graph(graph, codes, cluster_vectors, metadata=metadata)


class SequentialIndexer(_BlockIndexer):
    """Sequential indexing: users then items numbered consecutively in first-appearance order.

    Settings (:class:`~hf_metaid.indexing.BlockIndexerConfig`, or the same as keywords): ``block_size`` (ranks per
    cluster token), ``dim`` and ``seed`` of the random vectors behind the tokens.
    """

    scheme = "sequential"

    def _numbers(self, count: int) -> np.ndarray:
        return np.arange(count, dtype=np.int64)


class RandomIndexer(_BlockIndexer):
    """Random indexing: users and items numbered by a seeded random permutation.

    Settings (:class:`~hf_metaid.indexing.BlockIndexerConfig`, or the same as keywords): ``block_size`` (ranks per
    cluster token), ``dim`` of the random vectors behind the tokens, ``seed`` of the permutation and the vectors.
    """

    scheme = "random"

    def _numbers(self, count: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, 0x52414E44]).permutation(count).astype(np.int64)


class IndependentIndexer(_BlockIndexer):
    """Independent indexing (IID): one new token per user and per item, ``(m, 0)`` for entity number ``m`` (module
    docstring).

    Settings (:class:`~hf_metaid.indexing.IndependentIndexerConfig`, or the same as keywords): ``dim`` and ``seed``
    of the random vectors behind the tokens.
    """

    scheme = "independent"
    config_class = IndependentIndexerConfig

    def _block_size(self, count: int) -> int:
        return 1

    def _numbers(self, count: int) -> np.ndarray:
        return np.arange(count, dtype=np.int64)
