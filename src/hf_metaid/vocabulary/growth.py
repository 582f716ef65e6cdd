"""A growing catalogue: IDs for new users and items, every existing ID kept byte for byte.

Refitting a vocabulary renumbers every ID, which silently invalidates every model and shared vocabulary built on
it. :func:`extend_vocabulary` instead places each new entity into the existing ID space (a fold-in):

1. **Vector.** A new entity's vector is the mean of the vectors of the entities it interacted with in the new data
   that already have a place (one term per interaction row, so a repeated interaction counts twice), scaled to unit
   length as the META ID vectors are. A known entity's vector is its own when the vocabulary carries entity vectors
   (a freshly fitted one, or one rebuilt from ``to_dataset``), else its cluster's vector (``metaid_vocab.json``
   holds no entity vectors). Entities in the cold-start cluster carry no information and do not count.
2. **Cluster.** The entity joins the existing cluster whose vector is nearest by cosine (the rule the indexer
   assigns by), never the cold-start cluster, and a cluster of its own kind where users and items were clustered
   apart (``joint=False``); ties go to the lower cluster. No cluster is ever added: a cluster token would move
   every rank token's id. (The neighbour mean is one rule for every embedding; it approximates each one's own
   fold-in, e.g. the spectral embedding's projection through its singular values, which the vocabulary does not
   keep.)
3. **Rank.** It takes the next free rank of that cluster (one past the highest rank used there, by users and items
   alike), so a rank token no longer means "closer to the centroid" for new entities. New rank tokens appear only
   where a cluster outgrows the largest rank; their fixed vectors continue the seeded draw of the existing ones.
4. **Order.** Placement runs in rounds: a round places every new entity with at least ``min_interactions`` rows
   and a placed neighbour (users first, then items, each in order of first appearance in the new data), so a new
   item seen only by new users is placed once those users are. Rounds repeat until none is placed.
5. **Cold start.** A new entity with fewer than ``min_interactions`` rows, or whose neighbours never get a place,
   follows the indexer's cold-start rule (``indexing.base``): the next free rank of the reserved zero-vector
   cluster, users before items. A vocabulary fitted without a cold-start cluster has no place for it without a new
   cluster; such entities are left out and counted in ``metadata["extension"]["left_out"]``.
6. **Other data.** New data of which the vocabulary knows under :data:`MIN_KNOWN_ITEMS` of the items (distinct
   ids) is refused (:class:`~hf_metaid.errors.UnknownDataError`, the rule of ``evaluate``): that is other data than
   the vocabulary's, whose new items would find few or no placed neighbours, land in the cold-start cluster and
   add rank tokens by the hundred. ``min_known_items=0`` grows it anyway.

The result is a new :class:`EntityVocabulary` (the argument is unchanged) with a new fingerprint;
``metadata["parent_fingerprint"]`` names the vocabulary it grew from and ``metadata["lineage"]`` every earlier
fingerprint, oldest first, so a model built on any ancestor can be grown to it
(:meth:`~hf_metaid.MetaIDForConditionalGeneration.extend_vocabulary`). ``metadata["extension"]`` counts the new
data's known and new entities and where the new ones went, ``metadata["extended_with"]`` names every extension's
data (name and row hash, oldest first), and ``metadata["cold_start"]`` counts the cold-start cluster as it now is.
The same inputs give the same vocabulary.
"""

from __future__ import annotations

import datasets
import numpy as np

from ..checks import check_int, check_number
from ..entity_vocabulary import EntityVocabulary, random_unit_vectors
from ..errors import InvalidArgumentError, UnknownDataError, VocabularyMismatchError
from ..indexing.base import COLD_START_RULE, training_table_hash
from ..indexing.clustering import normalize_rows
from ..indexing.graph import check_training_table

DEFAULT_MIN_INTERACTIONS = 2
# The share of the new data's items the vocabulary must know (the rule evaluation applies to its target items,
# hf_metaid.evaluation.evaluator.MIN_KNOWN_TARGETS): under it, the data is not the vocabulary's.
MIN_KNOWN_ITEMS = 0.5
FOLD_IN_RULE = (
    "unit-length mean of the placed neighbours' vectors; nearest existing cluster by cosine; next free rank there"
)


def extend_vocabulary(
    vocabulary: EntityVocabulary,
    interactions: datasets.Dataset,
    *,
    min_interactions: int = DEFAULT_MIN_INTERACTIONS,
    min_known_items: float = MIN_KNOWN_ITEMS,
    source: str | None = None,
    user_column: str = "user",
    item_column: str = "item",
) -> EntityVocabulary:
    """``vocabulary`` with IDs for the users and items of ``interactions`` it lacks (module docstring: the rule).

    Args:
        vocabulary: the vocabulary to grow (left unchanged).
        interactions: new interaction rows (columns ``user`` and ``item``, as :func:`~hf_metaid.load_interactions`
            gives); rows between known entities only serve as neighbours.
        min_interactions: rows a new entity needs to be placed by its neighbours; fewer → cold start.
        min_known_items: refuse data of which the vocabulary knows less than this share of the (distinct) items
            (0: grow it whatever the data).
        source: a name for the data (a file name), recorded with the hash of its rows in ``metadata["extension"]``
            and ``metadata["extended_with"]``, so a shared vocabulary says what it grew on.

    Raises:
        InvalidArgumentError: ``vocabulary`` is not an ``EntityVocabulary``, ``min_interactions`` < 1,
            ``min_known_items`` outside [0, 1] or ``source`` not a string.
        InteractionFormatError: ``interactions`` is empty or lacks the columns.
        UnknownDataError: the vocabulary knows less than ``min_known_items`` of the data's items.
    """
    if not isinstance(vocabulary, EntityVocabulary):
        raise InvalidArgumentError(f"vocabulary must be an EntityVocabulary, got {type(vocabulary).__name__}")
    check_int("min_interactions", min_interactions, minimum=1)
    check_number("min_known_items", min_known_items, 0.0, 1.0)
    if source is not None and not isinstance(source, str):
        raise InvalidArgumentError(f"source must be a name (str) for the data, got {type(source).__name__}")
    check_training_table(interactions, user_column, item_column)
    users = [str(u) for u in interactions[user_column][:]]
    items = [str(i) for i in interactions[item_column][:]]
    distinct_users, distinct_items = list(dict.fromkeys(users)), list(dict.fromkeys(items))
    new_users = [u for u in distinct_users if not vocabulary.has_user(u)]
    new_items = [i for i in distinct_items if not vocabulary.has_item(i)]
    data = {
        "name": source,
        "rows": len(users),
        "rows_sha256": training_table_hash(interactions, user_column, item_column),
        "users": len(distinct_users),
        "known_users": len(distinct_users) - len(new_users),
        "items": len(distinct_items),
        "known_items": len(distinct_items) - len(new_items),
    }
    check_known_items(data, min_known_items)
    growth = _Growth(vocabulary)
    neighbours: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for user, item in zip(users, items, strict=True):
        neighbours.setdefault(("user", user), []).append(("item", item))
        neighbours.setdefault(("item", item), []).append(("user", user))
    waiting = [("user", u) for u in new_users] + [("item", i) for i in new_items]
    waiting = [entity for entity in waiting if len(neighbours[entity]) >= min_interactions]
    rounds = 0
    while waiting:
        vectors = {entity: growth.fold_in(neighbours[entity]) for entity in waiting}  # one round sees one state
        placed = [entity for entity in waiting if vectors[entity] is not None]
        if not placed:
            break
        rounds += 1
        for entity in placed:
            growth.place(entity, vectors[entity])
        waiting = [entity for entity in waiting if vectors[entity] is None]
    left_out = {"users": 0, "items": 0}
    for entity in [("user", u) for u in new_users if not vocabulary.items_only] + [("item", i) for i in new_items]:
        if entity not in growth.codes:
            if growth.cold_cluster is None:
                left_out[entity[0] + "s"] += 1
            else:
                growth.place(entity, None)
    return growth.build(new_users, new_items, min_interactions, rounds, left_out, data)


def check_known_items(data: dict, min_known_items: float = MIN_KNOWN_ITEMS) -> None:
    """Refuse new data of which the vocabulary knows less than ``min_known_items`` of the items (``data``: the
    counts :func:`extend_vocabulary` records in ``metadata["extension"]["data"]``)."""
    if data["known_items"] >= min_known_items * data["items"]:
        return
    raise UnknownDataError(
        f"the vocabulary knows {data['known_items']} of the new data's {data['items']} items "
        f"({data['known_items'] / data['items']:.0%}) and {data['known_users']} of its {data['users']} users; under "
        f"{min_known_items:.0%} of the items known, this looks like other data than the vocabulary's (its "
        f"{data['items'] - data['known_items']} new items would find few or no placed neighbours and fill the "
        "cold-start cluster); extend anyway, e.g. with a batch of new items only, with min_known_items=0 "
        "(hf-metaid extend --force)"
    )


class _Growth:
    """The state of one extension: the parent's codes and vectors plus the entities placed so far."""

    def __init__(self, parent: EntityVocabulary) -> None:
        self.parent = parent
        self.cold_cluster = parent.metadata.get("cold_start", {}).get("cluster")
        self.centroids = normalize_rows(parent.cluster_vectors)
        self.usable = np.ones(parent.num_clusters, dtype=bool)
        if self.cold_cluster is not None:
            self.usable[self.cold_cluster] = False
        if not self.usable.any():
            raise InvalidArgumentError("the vocabulary has no cluster besides its cold-start one to place entities in")
        # Users and items clustered apart (MetaIDIndexer(joint=False)): user clusters first, then item clusters.
        split = parent.metadata.get("clusters", {})
        self.allowed = {"user": self.usable.copy(), "item": self.usable.copy()}
        if "users" in split and "items" in split:
            self.allowed["user"][split["users"] :] = False
            self.allowed["item"][: split["users"]] = False
        all_codes = np.concatenate([parent.user_codes, parent.item_codes])
        self.next_rank = np.zeros(parent.num_clusters, dtype=np.int64)
        np.maximum.at(self.next_rank, all_codes[:, 0], all_codes[:, 1] + 1)
        self.codes: dict[tuple[str, str], tuple[int, int]] = {}
        self.vectors: dict[tuple[str, str], np.ndarray | None] = {}

    def vector_of(self, entity: tuple[str, str]) -> np.ndarray | None:
        """The vector an entity lends its new neighbours (``None``: it has no place, or a cold-start one)."""
        kind, raw = entity
        if entity in self.vectors:
            return self.vectors[entity]
        parent = self.parent
        if not (parent.has_user(raw) if kind == "user" else parent.has_item(raw)):
            return None
        cluster, _ = parent.user_code(raw) if kind == "user" else parent.item_code(raw)
        if cluster == self.cold_cluster:
            return None
        if parent.entity_vectors is None:
            return self.centroids[cluster]
        row = parent._user_index[raw] if kind == "user" else len(parent.users) + parent._item_index[raw]
        return parent.entity_vectors[row]

    def fold_in(self, neighbours: list[tuple[str, str]]) -> np.ndarray | None:
        vectors = [v for v in map(self.vector_of, neighbours) if v is not None]
        if not vectors:
            return None
        return normalize_rows(np.mean(np.stack(vectors), axis=0, keepdims=True))[0]

    def place(self, entity: tuple[str, str], vector: np.ndarray | None) -> None:
        """Give ``entity`` the next free rank of the nearest usable cluster (the cold-start one without a vector).
        A user of a vocabulary without user IDs gets no code: its vector only carries its items' place to its new
        items."""
        if entity[0] == "user" and self.parent.items_only:
            self.vectors[entity] = vector
            return
        if vector is None:
            cluster = self.cold_cluster
        else:
            scores = np.where(self.allowed[entity[0]], self.centroids @ vector, -np.inf)
            cluster = int(np.argmax(scores))  # the first maximum: ties go to the lower cluster
        self.codes[entity] = (cluster, int(self.next_rank[cluster]))
        self.next_rank[cluster] += 1
        self.vectors[entity] = vector

    def build(
        self, new_users, new_items, min_interactions: int, rounds: int, left_out: dict, data: dict
    ) -> EntityVocabulary:
        parent = self.parent
        added_users = [u for u in new_users if ("user", u) in self.codes]
        added_items = [i for i in new_items if ("item", i) in self.codes]
        user_codes = np.vstack([parent.user_codes, _codes(self.codes, "user", added_users)])
        item_codes = np.vstack([parent.item_codes, _codes(self.codes, "item", added_items)])
        num_ranks = int(max(parent.num_ranks, self.next_rank.max()))
        rank_vectors = parent.rank_vectors
        if num_ranks > parent.num_ranks:
            fresh = random_unit_vectors(num_ranks, parent.vector_dim, parent.seed)[parent.num_ranks :]
            rank_vectors = np.vstack([rank_vectors, fresh])
        entity_vectors = None
        if parent.entity_vectors is not None:
            dim, num_users = parent.vector_dim, len(parent.users)
            zero = np.zeros(dim, np.float32)

            def rows(kind, ids):
                return [zero if self.vectors[(kind, raw)] is None else self.vectors[(kind, raw)] for raw in ids]

            entity_vectors = np.vstack(
                [
                    parent.entity_vectors[:num_users],
                    *rows("user", added_users),
                    parent.entity_vectors[num_users:],
                    *rows("item", added_items),
                ]
            )
        cold = {
            kind + "s": sum(entity[0] == kind and code[0] == self.cold_cluster for entity, code in self.codes.items())
            for kind in ("user", "item")
        }
        metadata = dict(parent.metadata)
        metadata["parent_fingerprint"] = parent.fingerprint
        metadata["lineage"] = [*parent.metadata.get("lineage", []), parent.fingerprint]
        metadata["extended_with"] = [
            *parent.metadata.get("extended_with", []),
            {"name": data["name"], "rows_sha256": data["rows_sha256"]},
        ]
        metadata["extension"] = {
            "rule": FOLD_IN_RULE,
            "cold_start_rule": COLD_START_RULE,
            "min_interactions": min_interactions,
            "rounds": rounds,
            "data": data,
            "users": len(added_users),
            "items": len(added_items),
            "cold_start": cold["users"] + cold["items"],
            "cold_start_users": cold["users"],
            "cold_start_items": cold["items"],
            "left_out": left_out,
            "new_rank_tokens": num_ranks - parent.num_ranks,
        }
        if self.cold_cluster is not None:  # the cluster as it now is, not as the fit left it
            before = parent.metadata.get("cold_start", {})
            metadata["cold_start"] = {
                **before,
                "users": int(np.sum(user_codes[:, 0] == self.cold_cluster)),
                "items": int(np.sum(item_codes[:, 0] == self.cold_cluster)),
            }
        return EntityVocabulary(
            parent.users + added_users,
            parent.items + added_items,
            user_codes,
            item_codes,
            parent.cluster_vectors,
            rank_vectors,
            scheme=parent.scheme,
            seed=parent.seed,
            entity_vectors=entity_vectors,
            metadata=metadata,
            cluster_prefix=parent.cluster_prefix,
            rank_prefix=parent.rank_prefix,
        )


def _codes(codes: dict, kind: str, ids: list[str]) -> np.ndarray:
    return np.array([codes[(kind, raw)] for raw in ids], dtype=np.int64).reshape(-1, 2)


def check_descends_from(vocabulary: EntityVocabulary, fingerprint: str) -> None:
    """Refuse a vocabulary that did not grow from the one with ``fingerprint`` (both values in the message)."""
    if not vocabulary.descends_from(fingerprint):
        raise VocabularyMismatchError(
            f"the vocabulary {vocabulary.fingerprint!r} did not grow from {fingerprint!r} (its lineage: "
            f"{vocabulary.metadata.get('lineage', [])}); extend the vocabulary the model was built for"
        )


def extend_tokenizer(tokenizer, vocabulary: EntityVocabulary):
    """A tokenizer for the grown ``vocabulary`` in which every token keeps its id: the rank tokens ``vocabulary``
    adds are appended right after the existing ID tokens (which stay contiguous: clusters, then ranks).

    Raises:
        VocabularyMismatchError: ``vocabulary`` did not grow from the tokenizer's, or changes its clusters.
        ValueError: tokens were added to the tokenizer after its ID tokens, so new ones could not follow them.
    """
    from tokenizers import AddedToken, Tokenizer

    from ..tokenization_metaid import MetaIDTokenizer

    if not isinstance(tokenizer, MetaIDTokenizer):
        raise InvalidArgumentError(f"tokenizer must be a MetaIDTokenizer, got {type(tokenizer).__name__}")
    old = tokenizer.entity_vocabulary
    check_descends_from(vocabulary, old.fingerprint)
    if (vocabulary.num_clusters, vocabulary.cluster_prefix, vocabulary.rank_prefix) != (
        old.num_clusters,
        old.cluster_prefix,
        old.rank_prefix,
    ) or vocabulary.num_ranks < old.num_ranks:
        raise VocabularyMismatchError(
            f"the vocabulary {vocabulary.fingerprint!r} changes the ID tokens of {old.fingerprint!r}: clusters "
            f"{old.num_clusters} -> {vocabulary.num_clusters}, ranks {old.num_ranks} -> {vocabulary.num_ranks}"
        )
    if tokenizer.id_token_range.stop != len(tokenizer):
        raise ValueError(
            f"the tokenizer holds {len(tokenizer) - tokenizer.id_token_range.stop} token(s) after its ID tokens, so "
            "new rank tokens cannot follow them; build a fresh tokenizer with MetaIDTokenizer.from_base"
        )
    special = {name: getattr(tokenizer, name) for name in ("pad_token", "eos_token", "unk_token", "bos_token")}
    grown = MetaIDTokenizer(
        tokenizer_object=Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()),
        entity_vocabulary=old,  # the tokens it holds so far; the grown vocabulary once the new ones are in
        model_max_length=tokenizer.model_max_length,
        **{name: value for name, value in special.items() if value is not None},
    )
    extra = vocabulary.rank_tokens[old.num_ranks :]
    grown.add_tokens([AddedToken(token, normalized=False, special=False) for token in extra])
    grown.entity_vocabulary = vocabulary
    grown._check_id_tokens()
    return grown


EntityVocabulary.register_library_hook("extend", extend_vocabulary)
