"""Indexer settings as validated, documented dataclasses (in the manner of PEFT's ``LoraConfig``).

Every setting is written once, as a field with its default, type and help text (``field(metadata={"help": ...})``);
the same description validates values (:mod:`hf_metaid.settings.fields`), becomes the vocabulary's ``params``
metadata (:meth:`to_dict`) and can become command-line options (:func:`~hf_metaid.settings.fields.
add_config_arguments`). Settings objects are frozen, so a validated object stays valid; derive variants with
``dataclasses.replace(config, seed=1)``.

:class:`SkipGramConfig` holds the skip-gram parameters; :class:`MetaIDIndexerConfig` extends it with the walk,
clustering and ranking settings, so the whole META ID configuration is one flat object (the vocabulary metadata has
always been flat) and passes as it is to :func:`~hf_metaid.indexing.skipgram.skipgram_embeddings`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, TypeVar

from ..errors import InvalidArgumentError
from ..settings.fields import validate_fields

BACKENDS = ("torch", "gensim")
EMBEDDINGS = ("skipgram", "spectral")
RANK_ORDERS = ("distance", "degree")
SVD_PRECISIONS = ("float64", "float32")

ConfigT = TypeVar("ConfigT", bound="SeededConfig")


@dataclass(frozen=True, kw_only=True)
class SeededConfig:
    """Base of the settings objects: a seed, validation of every field on creation, and a JSON-able dict."""

    seed: int = field(
        default=0,
        metadata={
            "help": "seed of every random draw: the same data, settings and seed give byte-identical results",
            "minimum": 0,
        },
    )

    def __post_init__(self) -> None:
        validate_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (tuples as lists): the ``params`` a saved vocabulary records.

        ``type(config)(**config.to_dict())`` gives the same settings back, e.g. from a loaded vocabulary's metadata.
        """
        return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(self).items()}


@dataclass(frozen=True, kw_only=True)
class SkipGramConfig(SeededConfig):
    """Skip-gram with negative sampling over walks (:func:`~hf_metaid.indexing.skipgram.skipgram_embeddings`)."""

    dim: int = field(
        default=64, metadata={"help": "vector size (64, like the released META ID centroids)", "minimum": 1}
    )
    window: int = field(
        default=3,
        metadata={
            "help": "skip-gram context reach on a walk; each center draws its own reach in 1..window, so nearer "
            "nodes count more",
            "minimum": 1,
        },
    )
    negatives: int = field(default=5, metadata={"help": "skip-gram noise nodes per positive pair", "minimum": 1})
    epochs: int = field(default=1, metadata={"help": "skip-gram passes over the walks", "minimum": 1})
    backend: str = field(
        default="torch",
        metadata={
            "help": "skip-gram trainer: 'torch' (vectorised, Adam) or 'gensim' (the reference Word2Vec, an optional "
            "dependency)",
            "choices": BACKENDS,
        },
    )
    learning_rate: float = field(
        default=0.03,
        metadata={"help": "torch backend: Adam step size, decayed linearly over training", "exclusive_minimum": 0},
    )
    batch_size: int = field(
        default=16384, metadata={"help": "torch backend: (center, context) pairs per Adam step", "minimum": 1}
    )
    negative_pool: int = field(
        default=64,
        metadata={"help": "torch backend: noise nodes drawn once per step and shared by all its pairs", "minimum": 1},
    )


@dataclass(frozen=True, kw_only=True)
class MetaIDIndexerConfig(SkipGramConfig):
    """Settings of :class:`~hf_metaid.indexing.MetaIDIndexer`; defaults were chosen on Beauty's validation split.

    Raises:
        ValueError: a setting breaks its rule (the message names the field, the value and the rule), or
            ``num_clusters`` is a (users, items) pair with ``joint=True``.
    """

    num_clusters: int | tuple[int, int] = field(
        default=100,
        metadata={
            "help": "K, the number of cluster tokens (capped at the number of entities); with joint=False an int gives "
            "each entity type K clusters and a (users, items) pair sets them apart",
            "minimum": 1,
        },
    )
    embedding: str = field(
        default="skipgram",
        metadata={
            "help": "'skipgram': meta-path walks + skip-gram (the paper's); 'spectral': truncated SVD of the "
            "normalised interaction graph (seconds instead of tens of seconds, for very large catalogues)",
            "choices": EMBEDDINGS,
        },
    )
    svd_precision: str = field(
        default="float64",
        metadata={
            "help": "spectral embedding: arithmetic of the SVD; 'float32' runs 3-5 times faster on large graphs, its "
            "singular values agree with 'float64' to about 1e-6, but the IDs it gives are not the same",
            "choices": SVD_PRECISIONS,
        },
    )
    joint: bool = field(
        default=True,
        metadata={
            "help": "cluster users and items together (the released Beauty IDs are a joint clustering) or each type "
            "on its own, item cluster ids following the user ones"
        },
    )
    walks_per_node: int = field(
        default=5, metadata={"help": "meta-path walks started from every user and every item", "minimum": 1}
    )
    walk_length: int = field(default=20, metadata={"help": "nodes per meta-path walk", "minimum": 1})
    kmeans_iters: int = field(default=25, metadata={"help": "FAISS spherical k-means iterations", "minimum": 1})
    rank_by: str = field(
        default="distance",
        metadata={
            "help": "order inside a cluster: 'distance' to the centroid (the paper's) or 'degree', the training "
            "interaction count, most first (distance among equals): a rank token then means the same in every "
            "cluster (low = popular), so a small model learns the rank step more easily",
            "choices": RANK_ORDERS,
        },
    )

    max_cluster_size: int | None = field(
        default=None,
        metadata={
            "help": "most entities with IDs one cluster may hold; a larger one is split by k-means on its members, "
            "the new cluster tokens following the K: the rank tokens number at most this, on logs whose vectors "
            "separate poorly too (None: no bound, the paper's)",
            "minimum": 1,
        },
    )
    user_ids: bool = field(
        default=True,
        metadata={
            "help": "give users ID tokens; False: items only, for models whose prompts never name a user (the "
            "recipes that read the history in the decoder): users still shape the vectors and clusters, and the "
            "rank tokens then number as many as the largest cluster's items, not its users and items",
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.joint and isinstance(self.num_clusters, tuple):
            raise InvalidArgumentError(
                f"num_clusters must be an int with joint=True (a (users, items) pair needs joint=False), "
                f"got {self.num_clusters!r}"
            )


@dataclass(frozen=True, kw_only=True)
class VectorConfig(SeededConfig):
    """Base of the baselines' settings: the size of the seeded random vectors behind their tokens (the model's F
    reads one per token; the baselines' tokens carry no meaning, so their vectors do not either)."""

    dim: int = field(default=64, metadata={"help": "size of the random vectors behind the tokens", "minimum": 1})


@dataclass(frozen=True, kw_only=True)
class BlockIndexerConfig(VectorConfig):
    """Settings of the block baselines :class:`~hf_metaid.indexing.SequentialIndexer` and ``RandomIndexer``."""

    block_size: int | None = field(
        default=None,
        metadata={
            "help": "ranks per cluster token; None: ceil(sqrt(number of entities)), the fewest added tokens",
            "minimum": 1,
        },
    )


@dataclass(frozen=True, kw_only=True)
class IndependentIndexerConfig(VectorConfig):
    """Settings of :class:`~hf_metaid.indexing.IndependentIndexer`: one token per entity, nothing else to choose."""


@dataclass(frozen=True, kw_only=True)
class CollaborativeIndexerConfig(VectorConfig):
    """Settings of :class:`~hf_metaid.indexing.CollaborativeIndexer`; the defaults are OpenP5's
    (``--collaborative_cluster 20 --collaborative_token_size 200``)."""

    num_groups: int = field(
        default=20,
        metadata={
            "help": "N, the groups each spectral clustering step splits a group of items into (OpenP5's "
            "collaborative_cluster)",
            "minimum": 2,
        },
    )
    leaf_size: int = field(
        default=200,
        metadata={
            "help": "M, the most items a leaf group holds: larger groups are split again (OpenP5's "
            "collaborative_token_size); also the users' block size, so the rank tokens number M",
            "minimum": 1,
        },
    )


def configure(config_class: type[ConfigT], config: ConfigT | None, settings: dict[str, Any]) -> ConfigT:
    """``config`` (the defaults when ``None``) with the keyword ``settings`` replacing its fields of the same name.

    Raises:
        TypeError: ``config`` is not a ``config_class`` (e.g. a setting passed by position), or a setting is unknown.
        ValueError: a setting breaks its rule.
    """
    if config is not None and not isinstance(config, config_class):
        raise InvalidArgumentError(
            f"config must be a {config_class.__name__} (other settings go by keyword, e.g. seed=0), "
            f"got {type(config).__name__} {config!r}"
        )
    known = [f.name for f in fields(config_class)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InvalidArgumentError(f"unknown {config_class.__name__} setting(s) {unknown}; known: {', '.join(known)}")
    return config_class(**settings) if config is None else replace(config, **settings)
