"""The ID schemes by name, and the stage that indexes a training split with one of them into an EntityVocabulary."""

from __future__ import annotations

import datasets

from ..entity_vocabulary import EntityVocabulary
from ..errors import InvalidArgumentError
from ..indexing import (
    CollaborativeIndexer,
    IndependentIndexer,
    MetaIDIndexer,
    MetaIDIndexerConfig,
    RandomIndexer,
    SequentialIndexer,
)
from ..indexing.base import BaseIndexer, ConfiguredIndexer
from ..indexing.config import SeededConfig

# The ID schemes by name: META ID and the baselines (OpenP5's sequential, random and collaborative indexing, and one
# token per entity). Every one builds an EntityVocabulary that the same tokenizer, model, trainer and evaluation take.
INDEXERS: dict[str, type[ConfiguredIndexer]] = {
    "metaid": MetaIDIndexer,
    "sequential": SequentialIndexer,
    "random": RandomIndexer,
    "collaborative": CollaborativeIndexer,
    "independent": IndependentIndexer,
}
SCHEMES = tuple(INDEXERS)


def build_indexer(scheme: str = "metaid", config: SeededConfig | None = None) -> BaseIndexer:
    """The indexer of ``scheme`` (one of :data:`SCHEMES`).

    ``config`` is the scheme's own settings object (e.g. a ``CollaborativeIndexerConfig`` for ``"collaborative"``),
    or a ``MetaIDIndexerConfig``, of which the baselines take only the seed and the vector size (so one recipe's
    settings serve every scheme); ``None``: the scheme's defaults.

    Raises:
        InvalidArgumentError: an unknown scheme, or settings of another scheme.
    """
    if scheme not in INDEXERS:
        raise InvalidArgumentError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")
    indexer_class = INDEXERS[scheme]
    if config is None or isinstance(config, indexer_class.config_class):
        return indexer_class(config)
    if isinstance(config, MetaIDIndexerConfig):
        return indexer_class(seed=config.seed, dim=config.dim)
    raise InvalidArgumentError(
        f"config for scheme {scheme!r} must be a {indexer_class.config_class.__name__} or a MetaIDIndexerConfig, "
        f"got {type(config).__name__}"
    )


def build_vocabulary(
    train: datasets.Dataset,
    names: dict | None = None,
    config: SeededConfig | None = None,
    scheme: str = "metaid",
    source: str | None = None,
) -> EntityVocabulary:
    """The ID vocabulary of the training split (``names``: the catalogue, whose unseen entities get cold-start IDs;
    ``source``: the data's name, recorded with the training rows' hash, see :func:`data_name`)."""
    return build_indexer(scheme, config).fit(train, catalogue=names, source=source)
