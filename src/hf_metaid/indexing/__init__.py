"""Indexers: training interactions → an :class:`~hf_metaid.EntityVocabulary` of two-token user/item IDs.

``MetaIDIndexer`` builds META IDs (meta-path walks, skip-gram, spherical k-means); the baselines are
``SequentialIndexer`` and ``RandomIndexer`` (OpenP5's SID and RID), ``CollaborativeIndexer`` (OpenP5's CID, recursive
spectral clustering of item co-occurrence) and ``IndependentIndexer`` (IID, one token per entity). All share
:class:`BaseIndexer`'s ``fit(train, catalogue=None)``. Their settings are documented, validated dataclasses:
``MetaIDIndexerConfig`` (which extends the skip-gram parameters of ``SkipGramConfig``), ``BlockIndexerConfig``,
``CollaborativeIndexerConfig`` and ``IndependentIndexerConfig``.
"""

from .base import BaseIndexer
from .baselines import IndependentIndexer, RandomIndexer, SequentialIndexer
from .collaborative import CollaborativeIndexer
from .config import (
    BlockIndexerConfig,
    CollaborativeIndexerConfig,
    IndependentIndexerConfig,
    MetaIDIndexerConfig,
    SkipGramConfig,
)
from .metaid import MetaIDIndexer

__all__ = [
    "BaseIndexer",
    "BlockIndexerConfig",
    "CollaborativeIndexer",
    "CollaborativeIndexerConfig",
    "IndependentIndexer",
    "IndependentIndexerConfig",
    "MetaIDIndexer",
    "MetaIDIndexerConfig",
    "RandomIndexer",
    "SequentialIndexer",
    "SkipGramConfig",
]
