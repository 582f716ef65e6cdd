"""Non-semantic ID schemes (OpenP5's sequential and random indexing), to compare META ID against.

They show that the indexer interface carries any ID scheme: both number the training entities ``0 .. n-1`` (users
then items) and write number ``m`` as the two tokens (cluster ``m // block``, rank ``m % block``). The vectors behind
their tokens carry no meaning: seeded random unit vectors.
"""

from __future__ import annotations

import math

import datasets
import numpy as np

from ..entity_vocabulary import random_unit_vectors
from .base import BaseIndexer, IndexedEntities
from .graph import build_graph


class _BlockIndexer(BaseIndexer):
    """Number entities, then split each number into (block, offset) tokens."""

    def __init__(self, block_size: int | None = None, dim: int = 64, seed: int = 0) -> None:
        super().__init__(seed)
        if block_size is not None and int(block_size) < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}")
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim!r}")
        self.block_size = None if block_size is None else int(block_size)
        self.dim = int(dim)

    def _numbers(self, count: int) -> np.ndarray:
        """The number given to each of ``count`` entities (users first, then items, first-appearance order)."""
        raise NotImplementedError

    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        graph = build_graph(train, self.user_column, self.item_column)
        count = graph.num_nodes
        block = self.block_size or max(1, math.ceil(math.sqrt(count)))
        numbers = self._numbers(count)
        codes = np.stack([numbers // block, numbers % block], axis=1).astype(np.int64)
        num_clusters = -(-count // block)
        cluster_vectors = random_unit_vectors(num_clusters, self.dim, self.seed, stream=0x434C5553)
        metadata = {"params": {"block_size": self.block_size, "dim": self.dim, "seed": self.seed}, "block": block}
        return IndexedEntities(
            users=graph.users,
            items=graph.items,
            user_codes=codes[: graph.num_users],
            item_codes=codes[graph.num_users :],
            cluster_vectors=cluster_vectors,
            metadata=metadata,
        )


class SequentialIndexer(_BlockIndexer):
    """Sequential indexing: users then items numbered consecutively in first-appearance order.

    Args:
        block_size: ranks per cluster token; ``ceil(sqrt(#entities))`` by default (fewest added tokens).
        dim: size of the random vectors behind the tokens.
        seed: seed of those vectors.
    """

    scheme = "sequential"

    def _numbers(self, count: int) -> np.ndarray:
        return np.arange(count, dtype=np.int64)


class RandomIndexer(_BlockIndexer):
    """Random indexing: users and items numbered by a seeded random permutation.

    Args:
        block_size: ranks per cluster token; ``ceil(sqrt(#entities))`` by default.
        dim: size of the random vectors behind the tokens.
        seed: seed of the permutation and of the vectors.
    """

    scheme = "random"

    def _numbers(self, count: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0x52414E44]).permutation(count).astype(np.int64)
