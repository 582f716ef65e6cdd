"""A learned score for the items the decoder has already read: whether users take an item again.

With the history in the decoder, every item of the window is in the sequence the model reads. Whether such an item
comes again is a property of the data (no Beauty user buys the same item twice; check-ins and music come back to the
same places and songs), but a small model can only raise or lower a read item through its decoder state h, which
must then encode "not these twenty items" beside what comes next: on Beauty at 40 epochs about one slot in fifteen
of its top ten is an item the user already has. This module adds one learned scalar β to the rank-step logit of
every item (c, r) read earlier in the decoder's sequence (and to its score in the all-items objective), as
repeat-aware recommenders separate repeating from exploring. β starts at 0, so an untrained bias changes nothing,
and training moves it whichever way the data go: it is learned, not a filter (``exclude_seen`` is the filter).

Only torch and a sibling file are imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import torch
from torch import nn

from .item_output import pair_codes, shifted_right


class MetaIDRepeatBias(nn.Module):
    """β, added where the decoder scores an item it has read before in the same sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(
        self, logits: torch.Tensor, sequence: torch.Tensor, first_cluster_token: int, num_clusters: int, num_ranks: int
    ) -> torch.Tensor:
        """``logits`` (…, T, V), the next-token logits of the last T positions of ``sequence`` (…, S), the decoder's
        tokens read so far, with β added at rank token r of every position whose token is cluster token c where item
        (c, r) was read earlier in ``sequence`` (a forward, so that PEFT's trained copy is the one that scores).
        Returns a new tensor."""
        codes = read_item_codes(sequence, first_cluster_token, num_clusters, num_ranks)  # (…, S)
        length, positions = sequence.shape[-1], logits.shape[-2]
        current = sequence[..., length - positions :] - first_cluster_token  # (…, T): the cluster being decoded
        earlier = torch.arange(length, device=sequence.device) < torch.arange(
            length - positions, length, device=sequence.device
        ).unsqueeze(-1)  # (T, S)
        codes = codes.unsqueeze(-2)  # (…, 1, S)
        match = earlier & (codes >= 0) & (torch.div(codes, num_ranks, rounding_mode="floor") == current.unsqueeze(-1))
        columns = torch.where(match, first_cluster_token + num_clusters + codes.remainder(num_ranks), -1)
        return self.add_at(logits, columns)

    def add_at(self, scores: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """``scores`` (…, V) with β added at ``columns`` (…, S) of the same leading shape, -1 where none; no column may
        repeat within a row (each would add β once more)."""
        valid = columns >= 0
        added = self.weight.to(scores.dtype).expand(columns.shape) * valid
        return scores.scatter_add(-1, columns.clamp(min=0), added)  # a -1 adds 0 at column 0


def read_item_codes(
    sequence: torch.Tensor, first_cluster_token: int, num_clusters: int, num_ranks: int
) -> torch.Tensor:
    """``sequence.shape``: at each rank token that follows a cluster token, the code ``c * num_ranks + r`` of the item
    it completes, if no earlier position of the row completed the same item; -1 everywhere else. The first-occurrence
    rule keeps β from being added twice for an item read twice."""
    codes = pair_codes(sequence, shifted_right(sequence), first_cluster_token, num_clusters, num_ranks)
    length = sequence.shape[-1]
    before = torch.ones(length, length, dtype=torch.bool, device=sequence.device).tril(-1)  # [s, s']: s' < s
    repeated = ((codes.unsqueeze(-1) == codes.unsqueeze(-2)) & before).any(-1)
    return codes.masked_fill(repeated, -1)


def codes_read_before(sequence: torch.Tensor, first_cluster_token: int, num_clusters: int, num_ranks: int):
    """``(…, S, S)``: for each position t of ``sequence``, the codes of the items completed at positions up to and
    including t (:func:`read_item_codes`), -1 elsewhere: what the state at t has read, the set its next item's
    cluster and rank are predicted after."""
    codes = read_item_codes(sequence, first_cluster_token, num_clusters, num_ranks)
    length = sequence.shape[-1]
    upto = torch.ones(length, length, dtype=torch.bool, device=sequence.device).tril()  # [t, s]: s <= t
    return torch.where(upto, codes.unsqueeze(-2), -1)
