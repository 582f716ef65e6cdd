"""Indexers: training interactions → an :class:`~hf_metaid.EntityVocabulary` of two-token user/item IDs.

``MetaIDIndexer`` builds META IDs (meta-path walks, skip-gram, spherical k-means); ``SequentialIndexer`` and
``RandomIndexer`` are the non-semantic baselines. All share :class:`BaseIndexer`'s ``fit(train, catalogue=None)``.
"""

from .base import BaseIndexer
from .baselines import RandomIndexer, SequentialIndexer
from .metaid import MetaIDIndexer

__all__ = ["BaseIndexer", "MetaIDIndexer", "RandomIndexer", "SequentialIndexer"]
