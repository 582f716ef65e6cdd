"""Items' own parameters beside their two shared ID tokens: an output vector at the rank step, an input vector where
the history is read.

With plain META ID decoding the score of item (c, r) at the rank step is ``h · W[rank r]``, and the row W[rank r]
is shared by the items of rank r in every cluster: a small model must fold "which item of cluster c" into the
decoder state h alone, and it learns clusters far better than items. This module gives every item i = (c, r) its
own vector u_i and bias b_i, and adds ``h · u_i + b_i`` to the logit of rank token r wherever the previous token is
cluster token c. Everything else (the cluster step, the end token, text tokens) is untouched, the ID tokens stay
the same, and u, b start at zero, so an untrained item output changes nothing. :class:`MetaIDItemInput` does the
same on the input side: the input embedding of an item's rank token (in the encoder, or in the decoder when the
history is there) gets the item's own vector.

Items are numbered by (cluster, rank) in the order of the model's item table (row-major over the saved
``metaid_item_mask``), so the numbering travels with the weights. Only torch is imported: the file travels with a
saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import torch
from torch import nn

# Positions x items x d_model elements gathered at once: bounds the memory of scoring many positions in one step.
_GATHER_BUDGET = 1 << 23
# One cluster scored with a slice of the item rows costs about as much as gathering this many (position, item row)
# pairs (forward + backward, benchmarks/results/item_output_paths.md): the positions are sliced cluster by cluster
# while the clusters present times this stays under the positions times the widest cluster, else gathered (a Python
# loop over thousands of one-item clusters would cost more than the padding it saves).
SLICE_COST = 3000


class MetaIDItemOutput(nn.Module):
    """Per-item output vectors u (``num_items x d_model``) and biases b, plus the tables that place them."""

    def __init__(self, num_items: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_items, d_model))
        self.bias = nn.Parameter(torch.zeros(num_items))
        self._tables: tuple | None = None

    def tables(self, item_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(slots, ranks, valid)``, each ``(num_clusters, most items in a cluster)``: the item number, rank and
        presence of the j-th item of cluster c (padding points at item ``num_items``, a zero row). Cached per mask."""
        key = (id(item_mask), item_mask._version, item_mask.device)
        if self._tables is not None and self._tables[0] == key:
            return self._tables[1:]
        mask = item_mask.bool()
        count = int(mask.sum())
        if count != self.weight.shape[0]:
            raise ValueError(
                f"the item output has {self.weight.shape[0]} item rows but the item table holds {count} items: "
                "the model was built for another ID vocabulary"
            )
        per_cluster = mask.sum(dim=1)
        width = max(int(per_cluster.max()) if per_cluster.numel() else 0, 1)
        valid = torch.arange(width, device=mask.device) < per_cluster.unsqueeze(1)
        slots = torch.full(valid.shape, count, dtype=torch.long, device=mask.device)
        ranks = torch.zeros(valid.shape, dtype=torch.long, device=mask.device)
        _, rank = mask.nonzero(as_tuple=True)  # row-major, cluster by cluster: the item numbering
        slots[valid] = torch.arange(count, device=mask.device)
        ranks[valid] = rank
        self._tables = (key, slots, ranks, valid)
        return slots, ranks, valid

    def forward(
        self,
        logits: torch.Tensor,
        hidden: torch.Tensor,
        previous: torch.Tensor,
        item_mask: torch.Tensor,
        first_cluster_token: int,
        first_rank_token: int,
    ) -> torch.Tensor:
        """``logits`` (…, V) with ``h · u_i + b_i`` added at each rank token that follows a cluster token (a forward,
        so that PEFT's trained copy of the module is the one that scores).

        ``hidden`` (…, d) is the decoder state the logits were computed from (what the language-model head reads),
        ``previous`` (…) the token each position follows. Returns a new tensor (autograd-safe)."""
        slots, ranks, valid = self.tables(item_mask)
        num_clusters = item_mask.shape[0]
        vocab = logits.shape[-1]
        flat_logits = logits.reshape(-1, vocab)
        cluster = previous.reshape(-1).to(logits.device) - first_cluster_token
        inside = (cluster >= 0) & (cluster < num_clusters)
        if not bool(inside.any()):
            return logits
        cluster = torch.where(inside, cluster, num_clusters)
        order = torch.argsort(cluster, stable=True)
        per_group = torch.bincount(cluster, minlength=num_clusters + 1)[:num_clusters]
        positions = order[: int(per_group.sum())]
        states = hidden.reshape(-1, hidden.shape[-1])[positions].to(self.weight.dtype)
        if slices_are_cheaper(int((per_group > 0).sum()), len(positions), slots.shape[1]):
            scores = self._sliced_scores(states, per_group.tolist(), slots, valid)
        else:
            scores = self._gathered_scores(states, cluster[positions], slots, valid)
        columns = first_rank_token + ranks[cluster[positions]]  # padding adds 0 at the first rank token
        added = flat_logits[positions].float().scatter_add(1, columns, scores.float())
        return flat_logits.float().index_copy(0, positions, added).view(logits.shape)

    def _sliced_scores(self, states, per_group: list[int], slots, valid) -> torch.Tensor:
        """``(P, width)`` scores of positions sorted by cluster (``per_group[c]`` of them in cluster c): the items of
        cluster c are rows start_c .. start_c + n_c of the item table (row-major numbering), so each group is one
        product with a slice of u, with no gather of padded rows. Fast where few clusters hold many items."""
        width = slots.shape[1]
        starts, sizes = slots[:, 0].tolist(), valid.sum(dim=1).tolist()
        scores, offset = [], 0
        for c, count in enumerate(per_group):
            if not count:
                continue
            rows = slice(starts[c], starts[c] + sizes[c])
            score = states[offset : offset + count] @ self.weight[rows].T + self.bias[rows]
            scores.append(nn.functional.pad(score, (0, width - sizes[c])))
            offset += count
        return torch.cat(scores)

    def _gathered_scores(self, states, clusters, slots, valid) -> torch.Tensor:
        """The same scores with each position's cluster rows gathered (padded to the widest cluster), in chunks:
        fast where the positions span many small clusters (independent IDs: one item per cluster)."""
        weight = torch.cat([self.weight, self.weight.new_zeros(1, self.weight.shape[1])])
        bias = torch.cat([self.bias, self.bias.new_zeros(1)])
        chunk = max(1, _GATHER_BUDGET // max(1, slots.shape[1] * weight.shape[1]))
        scores = []
        for start in range(0, len(clusters), chunk):
            rows = slots[clusters[start : start + chunk]]  # (P, width)
            score = torch.bmm(weight[rows], states[start : start + chunk].unsqueeze(-1)).squeeze(-1) + bias[rows]
            scores.append(score * valid[clusters[start : start + chunk]])
        return torch.cat(scores)

    def all_items_loss(
        self,
        hidden: torch.Tensor,
        labels: torch.Tensor,
        item_mask: torch.Tensor,
        first_cluster_token: int,
        negatives: int = 0,
        repeat: tuple[nn.Module, torch.Tensor] | None = None,
        prior: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of each target item over every item, scored ``h · u_j + b_j`` from the state that predicts
        the item's cluster token: the full-softmax objective of a sequential recommender, on the item output's own
        vectors.

        The two-token objective trains u_j only where the target lies in j's cluster (the rank step compares an item
        with its cluster's other items); this one compares it with every item at every target, so u learns from
        all of them. ``hidden`` (B, L, d) is what the language-model head read, ``labels`` (B, L) the targets; an
        item is a cluster token followed by a rank token in ``labels``. Zero (with a gradient) when none is.

        ``negatives`` > 0 scores each target against a sample instead of every item: the batch's target items plus
        ``negatives`` items drawn uniformly (torch's generator, so a seeded run repeats), each candidate once. Its
        cost grows with the candidates, not the catalogue; with ``negatives`` ≥ the catalogue it is the full loss.

        ``repeat`` = ``(bias, codes)``: a :class:`~hf_metaid.repeat_bias.MetaIDRepeatBias` and, per position of
        ``labels``, the codes of the items read up to it (B, L, S; ``codes_read_before``), so that an item already read
        is scored with the same β as at the rank step.

        ``prior`` = ``(followers, scores)``, each (B, L, n): per position of ``labels``, item numbers (-1: none) and
        what the chain prior (:mod:`hf_metaid.chain_prior`) adds to their scores, as at the rank step."""
        code = pair_codes(labels[:, 1:], labels[:, :-1], first_cluster_token, *item_mask.shape)
        item = item_numbers(item_mask)[code.clamp(min=0)]
        inside = (code >= 0) & (item >= 0)
        if not bool(inside.any()):
            return hidden.sum() * 0.0
        states, targets = hidden[:, :-1][inside].float(), item[inside]
        num_items = self.weight.shape[0]
        column = None  # item number -> its column among the candidates (None: every item, in order)
        if 0 < negatives < num_items:
            drawn = torch.randint(num_items, (negatives,), device=targets.device)
            candidates, numbers = torch.unique(torch.cat([targets, drawn]), return_inverse=True)
            targets = numbers[: len(targets)]
            scores = states @ self.weight[candidates].float().T + self.bias[candidates].float()
            column = torch.full((num_items,), -1, dtype=torch.long, device=targets.device)
            column[candidates] = torch.arange(len(candidates), device=targets.device)
        else:
            scores = states @ self.weight.float().T + self.bias.float()
        if repeat is not None:
            bias, codes = repeat
            codes = codes[:, :-1][inside]  # (P, S): what each scoring state has read
            read = torch.where(codes >= 0, item_numbers(item_mask)[codes.clamp(min=0)], -1)
            if column is not None:
                read = torch.where(read >= 0, column[read.clamp(min=0)], -1)
            scores = bias.add_at(scores, read)
        if prior is not None:
            followers, added = (part[:, :-1][inside] for part in prior)  # (P, n)
            if column is not None:
                followers = torch.where(followers >= 0, column[followers.clamp(min=0)], -1)
            valid = followers >= 0
            scores = scores.scatter_add(-1, followers.clamp(min=0), added.to(scores.dtype) * valid)
        return nn.functional.cross_entropy(scores, targets)


class MetaIDItemInput(nn.Module):
    """Per-item input vectors w (``num_items x d_model``) added to the input embedding of an item's rank token, in the
    stack that reads the history: the encoder (prompts) or, with the history in the decoder, the decoder.

    A history item reaches the encoder as two tokens whose rows are shared (cluster c by all of c's entities, rank r
    by the r-th entity of every cluster), so the encoder must compose an item's identity from the pair. Here the rank
    token that follows cluster token c also gets w_i for the item i = (c, r); w starts at zero. The item table is a
    buffer of this module (the stack has no other way to it: ``generate`` calls the encoder alone). In the decoder,
    the rank token of history item n is the position that predicts item n + 1: its own vector is one residual step
    from the next item's scores, as an item embedding is in a sequential recommender.
    """

    def __init__(self, num_items: int, d_model: int, num_clusters: int, num_ranks: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_items, d_model))
        self.register_buffer("item_mask", torch.zeros(num_clusters, num_ranks, dtype=torch.uint8), persistent=True)
        self._index: tuple | None = None

    def item_index(self) -> torch.Tensor:
        """``(num_clusters * num_ranks,)``: the item number of each flattened (cluster, rank), -1 where no item."""
        mask = self.item_mask
        key = (id(mask), mask._version, mask.device)
        if self._index is None or self._index[0] != key:
            self._index = (key, item_numbers(mask))
        return self._index[1]

    def forward(
        self, input_ids: torch.Tensor, first_cluster_token: int, previous: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``input_ids.shape + (d_model,)``: w_i at the rank token of every item (c, r) written as its two tokens,
        zero elsewhere. ``previous`` (shape of ``input_ids``): the token before each one, where it is not the one
        to its left in ``input_ids`` (a decoder fed one token per step); default: ``input_ids`` shifted right."""
        if previous is None:
            previous = shifted_right(input_ids)
        code = pair_codes(input_ids, previous, first_cluster_token, *self.item_mask.shape)
        item = self.item_index()[code.clamp(min=0)]
        inside = (code >= 0) & (item >= 0)
        return self.weight[item.clamp(min=0)] * inside.unsqueeze(-1).to(self.weight.dtype)


def shifted_right(tokens: torch.Tensor) -> torch.Tensor:
    """The token before each one of ``tokens`` (…, L) along its row, -1 before the first."""
    return nn.functional.pad(tokens[..., :-1], (1, 0), value=-1)


def pair_codes(
    tokens: torch.Tensor, previous: torch.Tensor, first_cluster_token: int, num_clusters: int, num_ranks: int
) -> torch.Tensor:
    """``tokens.shape``: the code ``c * num_ranks + r`` where a token is rank token r and the one before it
    (``previous``, same shape) cluster token c, i.e. where an item's two ID tokens end; -1 everywhere else. Whether
    (c, r) is an item of the table is the caller's to check (``item_numbers``)."""
    cluster = previous - first_cluster_token
    rank = tokens - first_cluster_token - num_clusters
    inside = (cluster >= 0) & (cluster < num_clusters) & (rank >= 0) & (rank < num_ranks)
    return torch.where(inside, cluster * num_ranks + rank, -1)


def slices_are_cheaper(clusters_present: int, positions: int, widest: int) -> bool:
    """Whether scoring ``positions`` one cluster slice at a time beats gathering each one's padded cluster rows."""
    return clusters_present * SLICE_COST <= positions * widest


def regrow_item_rows(values: torch.Tensor, old_mask: torch.Tensor, new_mask: torch.Tensor) -> torch.Tensor:
    """``values`` (one row per item of ``old_mask``, in its numbering) laid out for ``new_mask``, a grown item
    table: each old item keeps its row, a new item gets zeros (no item-specific score until it trains)."""
    message = "the new item table does not hold every item of the old one at its (cluster, rank)"
    if old_mask.shape[0] != new_mask.shape[0] or old_mask.shape[1] > new_mask.shape[1]:
        raise ValueError(message)
    old_cluster, old_rank = old_mask.bool().nonzero(as_tuple=True)
    numbers = item_numbers(new_mask)[old_cluster * new_mask.shape[1] + old_rank]
    if bool((numbers < 0).any()):
        raise ValueError(message)
    grown = values.new_zeros((int(new_mask.bool().sum()), *values.shape[1:]))
    grown[numbers] = values
    return grown


def item_numbers(item_mask: torch.Tensor) -> torch.Tensor:
    """``(num_clusters * num_ranks,)``: the number of the item at each flattened (cluster, rank), in row-major order
    (the numbering of every item table here), -1 where there is no item."""
    flat = item_mask.flatten().bool()
    return torch.where(flat, flat.long().cumsum(0) - 1, -1)
