"""Indexers: training interactions → an :class:`~hf_metaid.EntityVocabulary` of two-token user/item IDs.

``MetaIDIndexer`` builds META IDs (meta-path walks, skip-gram, spherical k-means); ``SequentialIndexer`` and
``RandomIndexer`` are the non-semantic baselines. All share :class:`BaseIndexer`'s ``fit(train, catalogue=None)``.
Their settings are documented, validated dataclasses: ``MetaIDIndexerConfig`` (which extends the skip-gram
parameters of ``SkipGramConfig``) and ``BlockIndexerConfig``.
"""

from .base import BaseIndexer
from .baselines import RandomIndexer, SequentialIndexer
from .config import BlockIndexerConfig, MetaIDIndexerConfig, SkipGramConfig
from .metaid import MetaIDIndexer

__all__ = [
    "BaseIndexer",
    "BlockIndexerConfig",
    "MetaIDIndexer",
    "MetaIDIndexerConfig",
    "RandomIndexer",
    "SequentialIndexer",
    "SkipGramConfig",
]
