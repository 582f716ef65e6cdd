"""The entity vocabulary: raw user/item id → (cluster, rank) → two out-of-vocabulary tokens.

This is the artefact every later stage shares: the tokenizer saves it beside its own files, the model keeps its
fingerprint in its config, the decoder builds its item tree from it. It knows nothing of how the codes were found
(META ID, sequential, random, ...): indexers produce it, everything else consumes it.

It is a flat file with no package imports because it travels with a saved tokenizer for ``trust_remote_code``:
growth and sharing, which need the library, are functions the library registers here when it is imported
(:meth:`EntityVocabulary.register_library_hook`), so this file never imports the package.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from .checks import check_int
from .errors import InvalidArgumentError, SavedFileError, UnknownEntityError

FORMAT_VERSION = 1
ENTITY_TYPES = ("user", "item")


# What each library hook is for, in the message of a method called where the library has registered none.
LIBRARY_HOOKS = ("extend", "save_pretrained", "from_pretrained", "push_to_hub")


class EntityVocabulary:
    """Two-level IDs for users and items, the tokens that spell them and the fixed vectors behind those tokens.

    Args:
        users: raw user ids (strings), in a fixed order.
        items: raw item ids (strings), in a fixed order.
        user_codes: ``int64`` array of shape ``(len(users), 2)``: (cluster, rank) per user.
        item_codes: ``int64`` array of shape ``(len(items), 2)``: (cluster, rank) per item. Every (cluster, rank)
            pair is used by exactly one entity, user or item.
        cluster_vectors: ``(num_clusters, dim)``: the vector v_t behind each cluster token (the centroid for META ID).
        rank_vectors: ``(num_ranks, dim)``: the fixed vector behind each rank token; drawn at random (seeded)
            when omitted.
        scheme: name of the ID scheme that produced the codes (``"metaid"``, ``"sequential"``, ``"random"``, ...).
        seed: seed of the rank vectors and of the scheme.
        entity_vectors: optional ``(len(users) + len(items), dim)`` vectors the codes were clustered from.
        metadata: JSON-able facts about how the vocabulary was made (parameters, cold-start entities, ...).
        cluster_prefix: spelling of the cluster tokens, ``<CT3>`` by default.
        rank_prefix: spelling of the rank tokens, ``<R17>`` by default.
    """

    def __init__(
        self,
        users: Sequence[str],
        items: Sequence[str],
        user_codes: np.ndarray,
        item_codes: np.ndarray,
        cluster_vectors: np.ndarray,
        rank_vectors: np.ndarray | None = None,
        *,
        scheme: str = "metaid",
        seed: int = 0,
        entity_vectors: np.ndarray | None = None,
        metadata: dict | None = None,
        cluster_prefix: str = "CT",
        rank_prefix: str = "R",
    ) -> None:
        self.users = _raw_ids(users, "users")
        self.items = _raw_ids(items, "items")
        self.user_codes = _codes(user_codes, len(self.users), "user_codes")
        self.item_codes = _codes(item_codes, len(self.items), "item_codes")
        self.cluster_vectors = np.ascontiguousarray(cluster_vectors, dtype=np.float32)
        if self.cluster_vectors.ndim != 2:
            raise InvalidArgumentError(
                f"cluster_vectors must be 2-D (clusters, dim), got shape {self.cluster_vectors.shape}"
            )
        if not isinstance(scheme, str) or not scheme:
            raise InvalidArgumentError(f"scheme must be a non-empty string, got {scheme!r}")
        for name, prefix in (("cluster_prefix", cluster_prefix), ("rank_prefix", rank_prefix)):
            if not isinstance(prefix, str) or not prefix.isalpha():
                raise InvalidArgumentError(
                    f"{name} must be letters only (tokens read <{{prefix}}{{number}}>), got {prefix!r}"
                )
        if cluster_prefix == rank_prefix:
            raise InvalidArgumentError(f"cluster_prefix and rank_prefix must differ, got {cluster_prefix!r} for both")
        self.scheme = scheme
        self.seed = check_int("seed", seed, minimum=0)
        self.metadata = dict(metadata or {})
        self.cluster_prefix = cluster_prefix
        self.rank_prefix = rank_prefix
        self.entity_vectors = None if entity_vectors is None else np.ascontiguousarray(entity_vectors, np.float32)
        all_codes = np.concatenate([self.user_codes, self.item_codes])
        self.num_clusters = int(self.cluster_vectors.shape[0])
        self.num_ranks = int(all_codes[:, 1].max()) + 1 if len(all_codes) else 0
        if rank_vectors is None:
            rank_vectors = random_unit_vectors(self.num_ranks, self.vector_dim, self.seed)
        self.rank_vectors = np.ascontiguousarray(rank_vectors, dtype=np.float32)
        self._validate(all_codes)
        self._user_index = {u: i for i, u in enumerate(self.users)}
        self._item_index = {it: i for i, it in enumerate(self.items)}

    # ----------------------------------------------------------------------------------------------- validation
    def _validate(self, all_codes: np.ndarray) -> None:
        for name, ids in (("user", self.users), ("item", self.items)):
            if len(set(ids)) != len(ids):
                raise ValueError(f"duplicate {name} ids in the vocabulary")
        if len(all_codes) and (all_codes.min() < 0 or all_codes[:, 0].max() >= self.num_clusters):
            raise ValueError(f"cluster codes must lie in [0, {self.num_clusters}) and ranks be >= 0")
        flat = all_codes[:, 0] * max(self.num_ranks, 1) + all_codes[:, 1]
        if len(np.unique(flat)) != len(flat):
            raise ValueError("two entities share the same (cluster, rank) ID; IDs must be unique")
        if self.rank_vectors.shape != (self.num_ranks, self.vector_dim):
            raise ValueError(f"rank_vectors must have shape {(self.num_ranks, self.vector_dim)}")
        if self.entity_vectors is not None and self.entity_vectors.shape[0] != len(self.users) + len(self.items):
            raise ValueError("entity_vectors needs one row per user then per item")

    # ---------------------------------------------------------------------------------------------- properties
    @property
    def vector_dim(self) -> int:
        return int(self.cluster_vectors.shape[1])

    @property
    def cluster_tokens(self) -> list[str]:
        return [f"<{self.cluster_prefix}{c}>" for c in range(self.num_clusters)]

    @property
    def rank_tokens(self) -> list[str]:
        return [f"<{self.rank_prefix}{r}>" for r in range(self.num_ranks)]

    @property
    def new_tokens(self) -> list[str]:
        """Tokens to add to a base tokenizer, in id order: cluster tokens, then rank tokens."""
        return self.cluster_tokens + self.rank_tokens

    def token_vectors(self) -> np.ndarray:
        """``(len(new_tokens), dim)`` fixed vectors v_t in the order of :attr:`new_tokens` (input of F)."""
        return np.concatenate([self.cluster_vectors, self.rank_vectors]).astype(np.float32)

    @property
    def fingerprint(self) -> str:
        """Short hash of the id → token mapping; a model and a tokenizer pair up only when theirs agree."""
        payload = json.dumps(
            [
                self.cluster_prefix,
                self.rank_prefix,
                self.num_clusters,
                self.num_ranks,
                self.users,
                self.items,
                self.user_codes.tolist(),
                self.item_codes.tolist(),
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.users) + len(self.items)

    def __repr__(self) -> str:
        return (
            f"EntityVocabulary(scheme={self.scheme!r}, users={len(self.users)}, items={len(self.items)}, "
            f"clusters={self.num_clusters}, ranks={self.num_ranks}, fingerprint={self.fingerprint!r})"
        )

    @property
    def items_only(self) -> bool:
        """Whether only items have IDs (``MetaIDIndexer(user_ids=False)``): prompts cannot name a user, and
        recommending reads the history alone."""
        return not self.users

    # ------------------------------------------------------------------------------------------------- lookups
    def has_user(self, raw_id: str) -> bool:
        return str(raw_id) in self._user_index

    def has_item(self, raw_id: str) -> bool:
        return str(raw_id) in self._item_index

    def user_code(self, raw_id: str) -> tuple[int, int]:
        index = self._user_index.get(str(raw_id))
        if index is None:
            raise UnknownEntityError(f"unknown user id {str(raw_id)!r}: not in the ID vocabulary ({self!r})")
        return tuple(int(x) for x in self.user_codes[index])

    def item_code(self, raw_id: str) -> tuple[int, int]:
        index = self._item_index.get(str(raw_id))
        if index is None:
            raise UnknownEntityError(f"unknown item id {str(raw_id)!r}: not in the ID vocabulary ({self!r})")
        return tuple(int(x) for x in self.item_codes[index])

    def spell(self, code: tuple[int, int]) -> str:
        return f"<{self.cluster_prefix}{code[0]}><{self.rank_prefix}{code[1]}>"

    def user_tokens(self, raw_id: str) -> str:
        """The token string of a user, e.g. ``<CT3><R17>``."""
        return self.spell(self.user_code(raw_id))

    def item_tokens(self, raw_id: str) -> str:
        """The token string of an item, e.g. ``<CT8><R2>``."""
        return self.spell(self.item_code(raw_id))

    def item_at(self, cluster: int, rank: int) -> str | None:
        """The raw id of the item whose code is (cluster, rank); ``None`` where no item has it (a user's code, or a
        free one), which is how a decoded ID that spells no item reads back."""
        return self._items_by_code.get((cluster, rank))

    def item_for_code(self) -> Mapping[tuple[int, int], str]:
        """``{(cluster, rank): raw item id}``, to map decoded IDs back to items: the vocabulary's own map, read-only."""
        return MappingProxyType(self._items_by_code)

    @functools.cached_property
    def _items_by_code(self) -> dict[tuple[int, int], str]:
        # Built on first use and kept: the one code -> item map, which the tokenizer reads too.
        return {(int(c), int(r)): item for item, (c, r) in zip(self.items, self.item_codes.tolist(), strict=True)}

    # ------------------------------------------------------------------------------------------------- growth
    def extend(self, interactions, *, min_interactions: int = 2, **options) -> EntityVocabulary:
        """A NEW vocabulary with IDs for the users and items of ``interactions`` this one lacks, every existing ID
        byte-identical: each new entity joins the existing cluster nearest to the mean of its known neighbours'
        vectors, with that cluster's next free rank; too few rows (< ``min_interactions``) or no placed neighbour:
        the cold-start cluster. Data of which this vocabulary knows under half of the items is refused as other
        data (``min_known_items=0`` grows it anyway). ``options``: ``min_known_items``, ``source`` (the data's
        name), ``user_column``, ``item_column``. The rule in full: ``hf_metaid.vocabulary.growth``, which needs the
        hf_metaid library (a folder loaded with ``trust_remote_code`` alone does not carry it)."""
        extend_vocabulary = self._library_hook("extend")
        return extend_vocabulary(self, interactions, min_interactions=min_interactions, **options)

    def descends_from(self, fingerprint: str) -> bool:
        """Whether this vocabulary is the one with ``fingerprint`` or grew from it by :meth:`extend` (so every ID
        of that one is unchanged here)."""
        return fingerprint == self.fingerprint or fingerprint in self.metadata.get("lineage", [])

    # ------------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "scheme": self.scheme,
            "seed": self.seed,
            "cluster_prefix": self.cluster_prefix,
            "rank_prefix": self.rank_prefix,
            "fingerprint": self.fingerprint,
            "metadata": self.metadata,
            "users": self.users,
            "items": self.items,
            "user_codes": self.user_codes.tolist(),
            "item_codes": self.item_codes.tolist(),
            "cluster_vectors": _float_rows(self.cluster_vectors),
            "rank_vectors": _float_rows(self.rank_vectors),
        }

    @classmethod
    def from_dict(cls, data: dict, entity_vectors: np.ndarray | None = None) -> EntityVocabulary:
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"a vocabulary is a dict (to_dict's output), got {type(data).__name__}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported vocabulary format_version {data.get('format_version')!r}")
        dim = len(data["cluster_vectors"][0]) if data["cluster_vectors"] else 0
        vocab = cls(
            data["users"],
            data["items"],
            np.array(data["user_codes"], dtype=np.int64).reshape(-1, 2),
            np.array(data["item_codes"], dtype=np.int64).reshape(-1, 2),
            np.array(data["cluster_vectors"], dtype=np.float32).reshape(-1, dim),
            np.array(data["rank_vectors"], dtype=np.float32).reshape(-1, dim),
            scheme=data["scheme"],
            seed=data["seed"],
            metadata=data.get("metadata"),
            cluster_prefix=data["cluster_prefix"],
            rank_prefix=data["rank_prefix"],
            entity_vectors=entity_vectors,
        )
        if data.get("fingerprint") not in (None, vocab.fingerprint):
            raise ValueError("vocabulary file is corrupt: its fingerprint does not match its content")
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as canonical JSON (same vocabulary → byte-identical file), atomically."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EntityVocabulary:
        """The vocabulary :meth:`save` wrote to ``path``.

        Raises:
            SavedFileError: the file is missing, unreadable, or not a whole vocabulary (cut short, edited, another
                file); the message names the path.
        """
        if not os.path.isfile(path):
            raise SavedFileError(f"{path}: no such vocabulary file")
        try:
            with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark an editor may have added is no harm
                return cls.from_dict(json.load(handle))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            # json's errors are ValueErrors; missing or malformed fields give the others, inside from_dict.
            reason = f"missing field {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
            raise SavedFileError(f"{path}: not a valid vocabulary file ({reason})") from err

    def to_dataset(self):
        """One row per entity (type, id, cluster, rank, tokens, vector) plus one per token (type ``cluster_token`` /
        ``rank_token``, with its fixed vector), so the dataset alone rebuilds the vocabulary (e.g. from the Hub)."""
        import datasets

        entity_vectors = self.entity_vectors
        rows: dict[str, list] = {k: [] for k in ("type", "id", "cluster", "rank", "tokens", "vector")}
        for offset, (kind, ids, codes) in enumerate(
            (("user", self.users, self.user_codes), ("item", self.items, self.item_codes))
        ):
            base = 0 if offset == 0 else len(self.users)
            for index, (raw, (c, r)) in enumerate(zip(ids, codes.tolist(), strict=True)):
                rows["type"].append(kind)
                rows["id"].append(raw)
                rows["cluster"].append(c)
                rows["rank"].append(r)
                rows["tokens"].append(self.spell((c, r)))
                rows["vector"].append(None if entity_vectors is None else entity_vectors[base + index].tolist())
        for kind, tokens, vectors in (
            ("cluster_token", self.cluster_tokens, self.cluster_vectors),
            ("rank_token", self.rank_tokens, self.rank_vectors),
        ):
            for index, token in enumerate(tokens):
                rows["type"].append(kind)
                rows["id"].append(token)
                rows["cluster"].append(index if kind == "cluster_token" else -1)
                rows["rank"].append(index if kind == "rank_token" else -1)
                rows["tokens"].append(token)
                rows["vector"].append(vectors[index].tolist())
        features = datasets.Features(
            {
                "type": datasets.Value("string"),
                "id": datasets.Value("string"),
                "cluster": datasets.Value("int64"),
                "rank": datasets.Value("int64"),
                "tokens": datasets.Value("string"),
                "vector": datasets.Sequence(datasets.Value("float32")),
            }
        )
        info = datasets.DatasetInfo(description=json.dumps(self._header(), sort_keys=True), features=features)
        return datasets.Dataset.from_dict(rows, features=features, info=info)

    @classmethod
    def from_dataset(cls, table, scheme: str | None = None, header: Mapping | None = None) -> EntityVocabulary:
        """Rebuild from :meth:`to_dataset` output (or the same table loaded back from disk or the Hub).

        ``header``: the scheme, seed and metadata where the table does not carry them in its ``info`` (a table read
        back from Parquet, whose header is the ``vocabulary_info.json`` beside it).
        """
        if header is None:
            header = json.loads(table.info.description) if table.info and table.info.description else {}
        columns = {name: table[name] for name in ("type", "id", "cluster", "rank", "tokens", "vector")}
        entities: dict[str, tuple[list, list, list]] = {k: ([], [], []) for k in ENTITY_TYPES}
        token_vectors: dict[str, dict[int, list]] = {"cluster_token": {}, "rank_token": {}}
        for kind, raw, c, r, vector in zip(
            columns["type"], columns["id"], columns["cluster"], columns["rank"], columns["vector"], strict=True
        ):
            if kind in entities:
                ids, codes, vectors = entities[kind]
                ids.append(raw)
                codes.append((c, r))
                vectors.append(vector)
            elif kind in token_vectors:
                token_vectors[kind][c if kind == "cluster_token" else r] = vector
            else:
                raise ValueError(f"unknown row type {kind!r} in vocabulary dataset")
        first_cluster = next(t for k, t in zip(columns["type"], columns["tokens"], strict=True) if k == "cluster_token")
        first_rank = next(t for k, t in zip(columns["type"], columns["tokens"], strict=True) if k == "rank_token")
        all_vectors = entities["user"][2] + entities["item"][2]
        entity_vectors = None if any(v is None for v in all_vectors) else np.array(all_vectors, dtype=np.float32)
        return cls(
            entities["user"][0],
            entities["item"][0],
            np.array(entities["user"][1], dtype=np.int64).reshape(-1, 2),
            np.array(entities["item"][1], dtype=np.int64).reshape(-1, 2),
            np.array([token_vectors["cluster_token"][i] for i in sorted(token_vectors["cluster_token"])], np.float32),
            np.array([token_vectors["rank_token"][i] for i in sorted(token_vectors["rank_token"])], np.float32),
            scheme=scheme or header.get("scheme", "metaid"),
            seed=header.get("seed", 0),
            metadata=header.get("metadata"),
            cluster_prefix=first_cluster[1:].rstrip(">").rstrip("0123456789"),
            rank_prefix=first_rank[1:].rstrip(">").rstrip("0123456789"),
            entity_vectors=entity_vectors,
        )

    def _header(self) -> dict:
        return {"scheme": self.scheme, "seed": self.seed, "metadata": self.metadata}

    # ------------------------------------------------------------------------------------------------ the Hub
    # Sharing needs the library (datasets, the card): these delegate to hf_metaid.vocabulary.hub, registered as
    # hooks when the library is imported, so this file still loads alone in a model folder (trust_remote_code).
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> str:
        """Write the vocabulary as a dataset folder (Parquet rows, ``vocabulary_info.json``, a dataset card with a
        cluster-size histogram, and ``metaid_vocab.json``), atomically; see
        :func:`hf_metaid.vocabulary.hub.save_vocabulary` for the options."""
        return self._library_hook("save_pretrained")(self, save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike, **kwargs) -> EntityVocabulary:
        """A shared vocabulary: a folder :meth:`save_pretrained` wrote, a Hub dataset repository ``org/name``
        (``revision=``, ``token=``, ``cache_dir=``, ``local_files_only=``), or a ``metaid_vocab.json`` file; see
        :func:`hf_metaid.vocabulary.hub.load_vocabulary`."""
        return cls._library_hook("from_pretrained")(name, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Upload the :meth:`save_pretrained` folder as the dataset repository ``repo_id`` (``private=``,
        ``token=``, ``commit_message=``, ``model_repo=``); see :func:`hf_metaid.vocabulary.hub.push_vocabulary`."""
        return self._library_hook("push_to_hub")(self, repo_id, **kwargs)

    # ---------------------------------------------------------------------------------------- library hooks
    # The library's side of growth and sharing, registered by hf_metaid.vocabulary.growth and .hub at import.
    _library_hooks: ClassVar[dict[str, Callable]] = {}

    @classmethod
    def register_library_hook(cls, name: str, function: Callable) -> None:
        """Make the method ``name`` (one of :data:`LIBRARY_HOOKS`) call ``function``; the library does this for
        each of them when it is imported."""
        if name not in LIBRARY_HOOKS:
            raise InvalidArgumentError(f"no EntityVocabulary method {name!r} takes a library hook; use {LIBRARY_HOOKS}")
        cls._library_hooks[name] = function

    @classmethod
    def _library_hook(cls, name: str) -> Callable:
        """The function the library registered for ``name``; this class's own, or where this file is a copy loaded
        from a saved folder (``trust_remote_code``), the one registered on the installed, imported library's."""
        hook = cls._library_hooks.get(name)
        library = sys.modules.get("hf_metaid.entity_vocabulary")
        if hook is None and library is not None:
            hook = library.EntityVocabulary._library_hooks.get(name)
        if hook is None:
            raise ImportError(
                f"EntityVocabulary.{name} needs the hf_metaid library, installed and imported "
                "(pip install hf-metaid; import hf_metaid): a folder loaded with trust_remote_code alone does not "
                "carry it"
            )
        return hook


def _raw_ids(ids: Sequence, name: str) -> list[str]:
    """Raw ids as strings; a bare string is refused (it would be read as one id per character)."""
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise InvalidArgumentError(f"{name} must be a list of raw ids, got {type(ids).__name__} {ids!r:.80}")
    for index, raw in enumerate(ids):
        if isinstance(raw, (bool, np.bool_)) or not isinstance(raw, (str, int, np.integer)):
            raise InvalidArgumentError(
                f"{name}[{index}] must be a raw id (str or int), got {type(raw).__name__} {raw!r}"
            )
    return [str(raw) for raw in ids]


def _codes(codes, count: int, name: str) -> np.ndarray:
    """``(count, 2)`` int64 (cluster, rank) codes, one row per entity."""
    array = np.asarray(codes)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise InvalidArgumentError(f"{name} must hold integers, got {array.dtype}")
    if array.size != 2 * count:
        raise InvalidArgumentError(
            f"{name} must have shape ({count}, 2): one (cluster, rank) per entity, got {array.shape}"
        )
    return array.astype(np.int64).reshape(count, 2)


def random_unit_vectors(count: int, dim: int, seed: int, stream: int = 0x52414E4B) -> np.ndarray:
    """Fixed random unit vectors (the rank tokens' v_t): seeded, so the same vocabulary gets the same vectors.

    ``stream`` keeps different uses of one seed apart (rank vectors, a baseline's cluster vectors, ...).
    """
    rng = np.random.default_rng([seed, stream])
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _float_rows(matrix: np.ndarray) -> list[list[float]]:
    """float32 values written with their shortest exact repr, so save → load is bit-exact and deterministic."""
    return [[float(np.format_float_positional(x, unique=True, trim="-")) for x in row] for row in matrix]
