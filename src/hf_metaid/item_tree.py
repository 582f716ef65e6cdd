"""The valid items of a vocabulary as a fixed-depth tree: every item is (cluster token, rank token, end).

:class:`ItemTree` holds the whole decoding constraint as dense tensors, built once per vocabulary, so that the
decoder (``decoding``) never walks a trie in Python. :func:`trie_prefix_allowed_tokens_fn` is the same constraint
as the classic dict trie for HF ``generate``: it lives here, beside the tree it is built from, because it is a
second view of the same items, not part of the decoder (which never calls it); tests and benchmarks measure the
decoder against ``generate`` with it.

Only torch is imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ItemTree:
    """The valid item IDs as dense tensors: the whole constraint, built once per vocabulary (and cached by
    ``model.item_tree``), so decoding never walks a trie in Python."""

    items: list[str]  # raw item ids, index = item number
    first_cluster_token: int
    first_rank_token: int
    eos_token_id: int
    item_of_code: torch.Tensor  # (num_clusters, num_ranks) item number or -1
    cluster_has_items: torch.Tensor  # (num_clusters,) bool
    # Derived in __post_init__. Each cluster's items, packed to the left and padded to the largest cluster's count M:
    cluster_items: torch.Tensor = field(init=False, repr=False)  # (num_clusters, M) item number or -1
    cluster_rank_tokens: torch.Tensor = field(init=False, repr=False)  # (num_clusters, M) the items' rank token ids
    cluster_penalty: torch.Tensor = field(init=False, repr=False)  # (num_clusters, M) 0 for an item, -inf for padding
    item_clusters: torch.Tensor = field(init=False, repr=False)  # (num_items,) cluster of each item
    item_rank_tokens: torch.Tensor = field(init=False, repr=False)  # (num_items,) token id of each item's rank
    clusters_with_items: torch.Tensor = field(init=False, repr=False)  # (W,) the clusters holding an item
    item_slots: torch.Tensor = field(init=False, repr=False)  # (num_items,) position of its cluster in the above
    cluster_sizes: torch.Tensor = field(init=False, repr=False)  # (num_clusters,) items per cluster
    item_numbers: dict[str, int] = field(init=False, repr=False)  # raw item id -> item number

    def __post_init__(self) -> None:
        present = self.item_of_code >= 0
        # A stable sort moves each cluster's items to the left in rank order; the -1 padding follows.
        order = (~present).to(torch.int8).sort(dim=1, stable=True).indices[:, : max(int(present.sum(1).max()), 1)]
        self.cluster_items = self.item_of_code.gather(1, order)
        self.cluster_rank_tokens = order + self.first_rank_token
        self.cluster_penalty = torch.zeros(order.shape).masked_fill(self.cluster_items < 0, float("-inf"))
        codes = present.nonzero()
        item_codes = torch.zeros(len(self.items), 2, dtype=torch.long)
        item_codes[self.item_of_code[codes[:, 0], codes[:, 1]]] = codes
        self.item_clusters = item_codes[:, 0].contiguous()
        self.item_rank_tokens = item_codes[:, 1] + self.first_rank_token
        self.clusters_with_items = self.cluster_has_items.nonzero().flatten()
        slot_of_cluster = torch.full((self.num_clusters,), -1, dtype=torch.long)
        slot_of_cluster[self.clusters_with_items] = torch.arange(len(self.clusters_with_items))
        self.item_slots = slot_of_cluster[self.item_clusters]
        self.cluster_sizes = present.sum(dim=1)
        self.item_numbers = {item: number for number, item in enumerate(self.items)}

    @classmethod
    def from_tokenizer(cls, tokenizer) -> ItemTree:
        vocab = tokenizer.entity_vocabulary
        # A tensor layout for decoding, not a second code -> item map: raw ids are read back through the vocabulary's
        # (EntityVocabulary.item_at); this table gives item numbers, for whole batches at once, on the model's device.
        item_of_code = torch.full((vocab.num_clusters, vocab.num_ranks), -1, dtype=torch.long)
        codes = torch.as_tensor(vocab.item_codes, dtype=torch.long).reshape(-1, 2)
        item_of_code[codes[:, 0], codes[:, 1]] = torch.arange(len(vocab.items))
        return cls(
            items=list(vocab.items),
            first_cluster_token=tokenizer.cluster_token_ids.start,
            first_rank_token=tokenizer.rank_token_ids.start,
            eos_token_id=tokenizer.eos_token_id,
            item_of_code=item_of_code,
            cluster_has_items=(item_of_code >= 0).any(dim=1),
        )

    @property
    def num_clusters(self) -> int:
        return self.item_of_code.shape[0]

    @property
    def num_ranks(self) -> int:
        return self.item_of_code.shape[1]

    _TENSORS = (
        "item_of_code",
        "cluster_has_items",
        "cluster_items",
        "cluster_rank_tokens",
        "cluster_penalty",
        "item_clusters",
        "item_rank_tokens",
        "clusters_with_items",
        "item_slots",
        "cluster_sizes",
    )

    def to(self, device: torch.device) -> ItemTree:
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def exclusion_mask(self, exclude: list[list[int]], device: torch.device | None = None) -> torch.Tensor:
        """``(len(exclude), num_items)`` bool, True for the item numbers listed per prompt."""
        mask = torch.zeros(len(exclude), len(self.items), dtype=torch.bool, device=device)
        rows = [row for row, numbers in enumerate(exclude) for _ in numbers]
        columns = [number for numbers in exclude for number in numbers]
        bad = next((number for number in columns if not 0 <= number < len(self.items)), None)
        if bad is not None:  # a negative number would silently wrap round to another item
            raise ValueError(f"exclude: item number {bad} is not in 0..{len(self.items) - 1}")
        mask[torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(columns, dtype=torch.long)] = True
        return mask

    def token_sequences(self) -> list[list[int]]:
        """Every item as its token ids ``[cluster, rank, eos]`` (for HF ``generate`` baselines and tests)."""
        codes = (self.item_of_code >= 0).nonzero().tolist()
        order = self.item_of_code[self.item_of_code >= 0].tolist()
        sequences: list[list[int]] = [[] for _ in self.items]
        for (cluster, rank), item in zip(codes, order, strict=True):
            sequences[item] = [self.first_cluster_token + cluster, self.first_rank_token + rank, self.eos_token_id]
        return sequences


def trie_prefix_allowed_tokens_fn(tree: ItemTree, decoder_start_token_id: int, exclude: list[list[int]] | None = None):
    """The classic constraint (a dict trie called per beam per step), for HF ``generate``: the reference that
    :func:`decode_items` is measured and tested against. ``exclude``: per prompt, item numbers left out of its
    trie (one trie per prompt then)."""
    sequences = tree.token_sequences()

    def build(left_out: set[int]) -> dict[tuple[int, ...], list[int]]:
        trie: dict[tuple[int, ...], set[int]] = {}
        for item, sequence in enumerate(sequences):
            if not sequence or item in left_out:
                continue
            for depth in range(len(sequence)):
                trie.setdefault(tuple(sequence[:depth]), set()).add(sequence[depth])
        return {prefix: sorted(tokens) for prefix, tokens in trie.items()}

    tries = [build(set(numbers)) for numbers in exclude] if exclude is not None else [build(set())]

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        prefix = tuple(sent.tolist()[1:])  # drop the decoder start token
        return tries[batch_id if exclude is not None else 0].get(prefix, [tree.eos_token_id])

    return allowed
