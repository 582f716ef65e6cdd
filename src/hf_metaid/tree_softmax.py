"""The item-tree softmax: every step of an item ID normalised over the tokens that can follow in a real item ID.

A plain language-model head spreads probability over the whole vocabulary, so a small model spends much of its
early training learning which rank tokens exist under each cluster (a cluster x rank table it can only hold in its
weights). With the tree softmax the decoder's logits get -inf wherever the
previous token rules a token out: after the start token only clusters that hold items, after cluster c only the
rank tokens of c's items, after a rank token only the end token. Training maximises the probability of the target
among real items; ``generate`` (with or without a trie), ``decode_items`` and evaluation all read the same
constrained distribution, because the rule sits in the model's forward. With the history in the decoder
(``config.metaid_history_in_decoder``) a rank token is followed by the next item's cluster token in training, so
the row after a rank token is the row after the start token (at inference the item ends after its rank token).
``benchmarks/results/tree_softmax.md`` records what it buys on a small T5 (2+2 layers, skip-gram IDs): a lower
validation loss at equal steps, the same hit rate.
"""

from __future__ import annotations

import torch


def next_token_table(
    item_mask: torch.Tensor,
    first_cluster_token: int,
    first_rank_token: int,
    start_token: int,
    eos_token: int,
    vocab_size: int,
    rank_continues: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(table, row_of)``: ``table[row_of[t]]`` is the additive bias (0 or -inf) on the logits after token ``t``.

    Args:
        item_mask: ``(num_clusters, num_ranks)``, non-zero where (cluster, rank) is an item.
        vocab_size: width of the logits (the model's output rows, which may exceed the tokenizer's length).
        rank_continues: a rank token is followed by another item (the history in the decoder), not by the end.

    Rows: 0 after the start token, 1 + c after cluster token c, then one row after any rank token, and a last row
    of zeros for every other token (text, end), which leaves those logits alone. T5 starts the decoder with its pad
    token, so positions after padding get the start row; their labels are -100 and never count in a loss.
    """
    item_mask = item_mask.bool()
    num_clusters, num_ranks = item_mask.shape
    table = torch.full((num_clusters + 3, vocab_size), float("-inf"), device=item_mask.device)
    table[0, first_cluster_token : first_cluster_token + num_clusters] = torch.where(
        item_mask.any(dim=1), 0.0, -torch.inf
    )
    ranks = table[1 : num_clusters + 1, first_rank_token : first_rank_token + num_ranks]
    ranks.masked_fill_(item_mask, 0.0)
    # A cluster with no item (only users) is never chosen after the start token; it may still end, never rank.
    table[1 : num_clusters + 1, eos_token] = torch.where(item_mask.any(dim=1), -torch.inf, 0.0)
    if rank_continues:
        table[num_clusters + 1] = table[0]
    else:
        table[num_clusters + 1, eos_token] = 0.0
    table[num_clusters + 2] = 0.0
    row_of = torch.full((vocab_size,), num_clusters + 2, dtype=torch.long, device=item_mask.device)
    row_of[first_cluster_token : first_cluster_token + num_clusters] = torch.arange(1, num_clusters + 1)
    row_of[first_rank_token : first_rank_token + num_ranks] = num_clusters + 1
    row_of[start_token] = 0
    return table, row_of


def check_labels(bias: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse labels that the tree rules out (their loss would be infinite), naming the first one."""
    picked = bias.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    bad = torch.isinf(picked) & (labels != -100)
    if bool(bad.any()):
        row, position = (int(x) for x in bad.nonzero()[0])
        raise ValueError(
            f"labels[{row}, {position}] = token {int(labels[row, position])} cannot follow the previous label in any "
            "item ID; the tree softmax trains on item IDs only (cluster, rank, end)"
        )
