"""The indexer interface: training interactions (+ an optional catalogue of names) → :class:`EntityVocabulary`.

Every ID scheme (META ID, sequential, random, ...) implements :meth:`BaseIndexer._index` for the entities that
occur in the training table; :meth:`BaseIndexer.fit` adds what all schemes share: input validation and the
cold-start rule for catalogue entities that never occur in training.

Cold-start rule: entities listed in the catalogue but absent from the training table (e.g. items seen only as a
validation or test target) cannot be placed by any training signal without leaking held-out data, so they share one
reserved extra cluster, index ``K`` (one past the scheme's own clusters), whose cluster vector is all zeros. Inside
it, ranks run ``0, 1, ...`` over the cold users then the cold items, each in catalogue order. Their entity vectors
(when the scheme has vectors) are zeros. The cluster is only added when at least one such entity exists.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, Generic

import datasets
import numpy as np

from ..entity_vocabulary import EntityVocabulary
from ..errors import InteractionFormatError
from .config import ConfigT, configure
from .graph import BipartiteGraph, check_training_table

COLD_START_RULE = "reserved cluster K (zero vector); ranks 0.. over cold users then cold items in catalogue order"


@dataclass
class IndexedEntities:
    """What a scheme produces for the entities that occur in training (before the cold-start rule is applied).

    Attributes:
        users, items: raw ids in the scheme's order.
        user_codes, item_codes: ``int64 (n, 2)`` (cluster, rank) codes, unique across users and items.
        cluster_vectors: ``(num_clusters, dim)`` vectors behind the cluster tokens.
        entity_vectors: optional ``(len(users) + len(items), dim)`` vectors the codes came from.
        metadata: JSON-able parameters of the scheme (no timings: the saved vocabulary must be reproducible).
        user_ids: ``False``: users get no IDs (``users`` is empty), the catalogue's cold users none either.
    """

    users: list[str]
    items: list[str]
    user_codes: np.ndarray
    item_codes: np.ndarray
    cluster_vectors: np.ndarray
    entity_vectors: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    user_ids: bool = True

    @classmethod
    def of_graph(cls, graph: BipartiteGraph, codes: np.ndarray, cluster_vectors: np.ndarray, **rest) -> IndexedEntities:
        """The entities of ``graph`` with ``codes`` for its nodes (users first, then items, as the graph numbers
        them)."""
        return cls(
            users=graph.users,
            items=graph.items,
            user_codes=codes[: graph.num_users],
            item_codes=codes[graph.num_users :],
            cluster_vectors=cluster_vectors,
            **rest,
        )


class BaseIndexer(ABC):
    """Builds an :class:`EntityVocabulary` from a training interaction table.

    Subclasses set :attr:`scheme` and implement :meth:`_index`. After :meth:`fit`, ``timings_`` holds wall-clock
    seconds per stage (at least ``total_s``); timings never enter the vocabulary, which must be byte-identical for
    the same data and seed.
    """

    scheme: str = ""
    user_column: str = "user"
    item_column: str = "item"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.timings_: dict[str, float] = {}

    def fit(
        self, train: datasets.Dataset, catalogue: dict | None = None, source: str | None = None
    ) -> EntityVocabulary:
        """Index the users and items of ``train`` (one row per interaction, columns ``user`` and ``item``).

        Args:
            train: the training split only (e.g. ``leave_one_out(table)["train"]``); held-out interactions here
                would leak into the IDs.
            catalogue: optional ``{"users": [...], "items": [...]}`` of every known id, as returned by
                :func:`hf_metaid.data.catalogue`; entities absent from ``train`` get IDs by the cold-start rule.
            source: a name for the data (a file name, ``"beauty"``), recorded in the metadata as ``source`` with
                :func:`training_table_hash` of ``train``, so a shared vocabulary says what it was fit on.

        Raises:
            InteractionFormatError (a ``ValueError``): empty table, missing columns or a malformed catalogue.
        """
        start = time.perf_counter()
        self.timings_ = {}
        check_training_table(train, self.user_column, self.item_column)
        wanted = _check_catalogue(catalogue)
        entities = self._index(train)
        vocabulary = _with_cold_start(entities, wanted, self.scheme, self.seed)
        if source is not None and not isinstance(source, str):
            raise InteractionFormatError(f"source must be a name (str) for the data, got {type(source).__name__}")
        vocabulary.metadata["source"] = {
            "name": source,
            "train_sha256": training_table_hash(train, self.user_column, self.item_column),
        }
        self.timings_["total_s"] = time.perf_counter() - start
        return vocabulary

    @abstractmethod
    def _index(self, train: datasets.Dataset) -> IndexedEntities:
        """Codes for every user and item of the (validated, non-empty) training table."""

    def _lap(self, name: str, since: float) -> float:
        """Record the seconds since ``since`` as stage ``name`` of :attr:`timings_`; returns the time now."""
        now = time.perf_counter()
        self.timings_[name] = now - since
        return now


class ConfiguredIndexer(BaseIndexer, Generic[ConfigT]):
    """An indexer whose settings are one validated settings object, :attr:`config` (a :attr:`config_class`).

    ``Indexer(config)``, ``Indexer(**settings)`` and ``Indexer(config, **settings)`` all work; keyword settings
    replace the config's fields of the same name (``dataclasses.replace``), and ``config`` itself is never changed.
    Settings read as attributes too (``indexer.dim``), and :meth:`get_params` is ``config.to_dict()``.
    """

    config_class: type[ConfigT]

    def __init__(self, config: ConfigT | None = None, **settings: Any) -> None:
        self.config: ConfigT = configure(self.config_class, config, settings)
        super().__init__(self.config.seed)

    def get_params(self) -> dict[str, Any]:
        """The settings, JSON-able; they go into the vocabulary's metadata as ``params``."""
        return self.config.to_dict()

    def __getattr__(self, name: str) -> Any:
        """Settings read as attributes (``indexer.num_clusters``), as before they lived in :attr:`config`."""
        config = self.__dict__.get("config")  # absent while unpickling: no recursion through self.config
        if config is not None and name in {f.name for f in fields(config)}:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def training_table_hash(train: datasets.Dataset, user_column: str = "user", item_column: str = "item") -> str:
    """sha256 of the training interactions as the indexer reads them: one ``user<TAB>item`` line per row, in
    order. Two vocabularies fit on the same rows record the same hash, whatever file format the rows came from."""
    digest = hashlib.sha256()
    for user, item in zip(train[user_column][:], train[item_column][:], strict=True):
        digest.update(f"{user}\t{item}\n".encode())
    return digest.hexdigest()


def _check_catalogue(catalogue: dict | None) -> dict[str, list[str]]:
    if catalogue is None:
        return {"users": [], "items": []}
    if not isinstance(catalogue, dict):
        raise InteractionFormatError(f"catalogue must be a dict {{'users': [...], 'items': [...]}}, got {catalogue!r}")
    unknown = sorted(set(catalogue) - {"users", "items"})
    if unknown:
        raise InteractionFormatError(f"catalogue has unknown key(s) {unknown}; expected 'users' and/or 'items'")
    checked = {}
    for key in ("users", "items"):
        values = catalogue.get(key) or []
        if isinstance(values, str):
            raise InteractionFormatError(f"catalogue[{key!r}] must be a list of ids, not a string")
        checked[key] = list(dict.fromkeys(str(v) for v in values))
    return checked


def _with_cold_start(entities: IndexedEntities, catalogue: dict[str, list[str]], scheme: str, seed: int):
    """Apply the cold-start rule (module docstring) and assemble the vocabulary."""
    known_users, known_items = set(entities.users), set(entities.items)
    cold_users = [u for u in catalogue["users"] if u not in known_users] if entities.user_ids else []
    cold_items = [i for i in catalogue["items"] if i not in known_items]
    cluster_vectors = np.asarray(entities.cluster_vectors, dtype=np.float32)
    user_codes = np.asarray(entities.user_codes, dtype=np.int64).reshape(-1, 2)
    item_codes = np.asarray(entities.item_codes, dtype=np.int64).reshape(-1, 2)
    entity_vectors = entities.entity_vectors
    cold_cluster = None
    if cold_users or cold_items:
        cold_cluster = int(cluster_vectors.shape[0])
        cluster_vectors = np.vstack([cluster_vectors, np.zeros((1, cluster_vectors.shape[1]), np.float32)])
        ranks = np.arange(len(cold_users) + len(cold_items), dtype=np.int64)
        cold_codes = np.stack([np.full_like(ranks, cold_cluster), ranks], axis=1)
        user_codes = np.vstack([user_codes, cold_codes[: len(cold_users)]])
        item_codes = np.vstack([item_codes, cold_codes[len(cold_users) :]])
        if entity_vectors is not None:
            dim = entity_vectors.shape[1]
            num_users = len(entities.users)
            entity_vectors = np.vstack(
                [
                    entity_vectors[:num_users],
                    np.zeros((len(cold_users), dim), np.float32),
                    entity_vectors[num_users:],
                    np.zeros((len(cold_items), dim), np.float32),
                ]
            )
    metadata = dict(entities.metadata)
    metadata["train"] = {"users": len(entities.users), "items": len(entities.items)}
    metadata["cold_start"] = {
        "rule": COLD_START_RULE,
        "cluster": cold_cluster,
        "users": len(cold_users),
        "items": len(cold_items),
    }
    return EntityVocabulary(
        entities.users + cold_users,
        entities.items + cold_items,
        user_codes,
        item_codes,
        cluster_vectors,
        scheme=scheme,
        seed=seed,
        entity_vectors=entity_vectors,
        metadata=metadata,
    )
