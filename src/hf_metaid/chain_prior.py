"""The item chain's counts as a learned prior: a direct path from the last item read to the next one.

The first-order item Markov chain ranks the items that followed the user's last item in the training data by how
often they did. That signal ("what comes after this item") is what a small model finds hardest: it must carry a
sparse item-to-item table through its decoder state, and on logs it was not tuned on it ranked the chain's answers
below the chain itself (NDCG@10 at 63-92% of the chain's). This module hands the model the chain's counts
n(j → i) of the training sequences, for the last item j the decoder has read, and learns how much to trust them.
A count says more about a rare item than about a popular one, which follows any item often, so each count is read
against the item's popularity p(i) (its share of the training transitions' targets, add-one smoothed) as a lift:

- at the cluster step, ``γ_c · log(1 + n(j → c) / (a · p(c)))`` on the logit of every cluster token c, where
  n(j → c) and p(c) sum over c's items;
- at the rank step after cluster token c, ``γ_r · log(1 + n(j → i) / (a · p(i)))`` on the logit of the rank token of
  each item i = (c, r) (and on i's score in the all-items objective).

With γ = 1 on logits that already hold log p(i), the model scores log(n(j → i) + a · p(i)): the item chain smoothed
towards popularity with a pseudo-count a, which learns too (from 100). On the synthetic ``markov`` log, whose process
is popularity mixed with item successors, that smoothed chain scores validation HR@10 / NDCG@10 0.279 / 0.162 by
counting alone (a = 100, history left out), against 0.266 / 0.140 for the plain chain, while ``log(1 + n)`` added to
log p(i) tops out at the plain chain's level whatever its weight.

With ``earlier`` = E > 0 the E items read before the last lend their followers too, the k-th before the last at a
weight ρ^k (ρ learned, from 1/2): n(j → i) becomes Σ_k ρ^k n(j_k → i), j_0 the last item. What came a few items ago
still says what comes next: on Beauty, counting alone, the smoothed chain of the last item scores validation HR@10 /
NDCG@10 0.0858 / 0.0555 (history left out); the last three items at weights 1, 1/2, 1/4 score 0.0963 / 0.0612, the
last four 0.0968 / 0.0614, and the last three at equal weights only 0.0874 / 0.0548 (benchmarks/chain_reach.py). The
recipe ``best`` with E = 3 scores 0.1080 / 0.0667 where it scored 0.1036 / 0.0643 with the last item alone.

γ_c and γ_r start at 0, so an untrained prior changes nothing. While training, each target's own transition is taken
out of the counts it is scored with (leave-one-out): the counts come from the same sequences the model learns from,
and a transition always counted at least once would teach the model to trust counts of 1 that new sequences do not
have (the popularities keep every transition: one count among thousands). Only the ``successors`` most frequent
followers of each item are kept (a buffer of ``num_items x successors`` item numbers and counts, and each item's count
as a target, saved with the weights); the counts are the training data's, set by
:meth:`MetaIDChainPrior.set_counts` (the training run does it from its split).

Only torch and a sibling file are imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .item_output import item_numbers, pair_codes, regrow_item_rows, shifted_right

# The pseudo-count a starts here: on the synthetic markov log the smoothed chain ranked best near it (30: HR@10 0.269,
# 100: 0.279, 300: 0.268 on validation, counting alone); it is learned from there.
INITIAL_PSEUDO_COUNT = 100.0


class MetaIDChainPrior(nn.Module):
    """γ = (γ_c, γ_r), the pseudo-count a, and per item its most frequent followers in the training sequences with
    their counts, and how often it followed any item."""

    def __init__(self, num_items: int, successors: int, num_clusters: int, num_ranks: int, earlier: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.log_pseudo_count = nn.Parameter(torch.tensor(math.log(INITIAL_PSEUDO_COUNT)))
        self.earlier = 0
        self.set_earlier(earlier)
        self.register_buffer("item_mask", torch.zeros(num_clusters, num_ranks, dtype=torch.uint8), persistent=True)
        self.register_buffer("followers", torch.full((num_items, successors), -1, dtype=torch.long), persistent=True)
        self.register_buffer("counts", torch.zeros(num_items, successors), persistent=True)
        self.register_buffer("targets", torch.zeros(num_items), persistent=True)
        self._tables: tuple | None = None

    def set_earlier(self, earlier: int) -> None:
        """Read the followers of the ``earlier`` items before the last too. Their decay ρ = sigmoid(``decay_logit``),
        from 1/2, is a parameter only while ``earlier`` > 0: a prior of the last item alone saves the weights it
        always did."""
        if earlier and "decay_logit" not in self._parameters:
            self.decay_logit = nn.Parameter(self.weight.new_zeros(()))
        elif not earlier:
            self._parameters.pop("decay_logit", None)
        self.earlier = earlier

    # ------------------------------------------------------------------------------------------------ counts
    def set_counts(self, pairs: torch.Tensor, item_mask: torch.Tensor) -> None:
        """Count the transitions ``pairs`` ((P, 2) item codes ``c * num_ranks + r``: an item, then the item that
        followed it in a training sequence) and keep each item's most frequent followers (ties: the lower item
        number first). ``item_mask`` is the model's item table, whose row-major order numbers the items."""
        mask = item_mask.to(self.item_mask.device, torch.uint8)
        if mask.shape != self.item_mask.shape:
            raise ValueError(f"the item table is {tuple(mask.shape)}, the chain prior's {tuple(self.item_mask.shape)}")
        numbers = item_numbers(mask)
        num_items, width = self.followers.shape
        if int((numbers >= 0).sum()) != num_items:
            raise ValueError(
                f"the chain prior holds {num_items} items but the item table {int((numbers >= 0).sum())}: "
                "the model was built for another ID vocabulary"
            )
        pairs = torch.as_tensor(pairs, dtype=torch.long, device=numbers.device).reshape(-1, 2)
        if len(pairs) and (int(pairs.min()) < 0 or int(pairs.max()) >= len(numbers)):
            raise ValueError("a transition names an item code outside the item table")
        pairs = numbers[pairs]
        pairs = pairs[(pairs >= 0).all(dim=1)]
        targets = torch.bincount(pairs[:, 1], minlength=num_items).to(self.targets.dtype)
        keys, counts = torch.unique(pairs[:, 0] * num_items + pairs[:, 1], return_counts=True)
        source, target = keys // num_items, keys % num_items
        # Most frequent first within each source item: sort by (source, -count, target).
        order = torch.argsort(target, stable=True)
        order = order[torch.argsort(-counts[order], stable=True)]
        order = order[torch.argsort(source[order], stable=True)]
        source, target, counts = source[order], target[order], counts[order]
        starts = torch.searchsorted(source, source)  # first row of each source item
        slot = torch.arange(len(source), device=source.device) - starts
        kept = slot < width
        followers = torch.full_like(self.followers, -1)
        values = torch.zeros_like(self.counts)
        followers[source[kept], slot[kept]] = target[kept]
        values[source[kept], slot[kept]] = counts[kept].to(values.dtype)
        self.item_mask.copy_(mask)
        self.followers.copy_(followers)
        self.counts.copy_(values)
        self.targets.copy_(targets)
        self._tables = None

    def regrow(self, new_mask: torch.Tensor) -> None:
        """Lay the counts out for a grown item table (every old item at the same (cluster, rank), new items in
        between): old items keep their followers under their new numbers, new items have none (and no count as a
        target) until counted."""
        old_mask, new_mask = self.item_mask, new_mask.to(self.item_mask.device)
        count = self.followers.shape[0]
        # Where each old item lands, from the rows regrow_item_rows lays out (it checks the tables too).
        placed = regrow_item_rows(torch.arange(1, count + 1, device=old_mask.device), old_mask, new_mask)
        rows = placed.nonzero().flatten()
        moved = torch.empty(count, dtype=torch.long, device=old_mask.device)
        moved[placed[rows] - 1] = rows  # old number -> new number
        renamed = torch.where(self.followers >= 0, moved[self.followers.clamp(min=0)], -1)
        followers = regrow_item_rows(renamed + 1, old_mask, new_mask) - 1  # a new item's row: -1, no follower
        counts = regrow_item_rows(self.counts, old_mask, new_mask)
        targets = regrow_item_rows(self.targets, old_mask, new_mask)
        self.item_mask = new_mask.to(self.item_mask.device, torch.uint8).clone()
        self.followers, self.counts, self.targets = followers, counts, targets
        self._tables = None

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(numbers, clusters, ranks)``: the item number of each flattened (cluster, rank) code (-1: none), and
        each item's cluster and rank. Cached per item table."""
        mask = self.item_mask
        key = (id(mask), mask._version, mask.device)
        if self._tables is None or self._tables[0] != key:
            numbers = item_numbers(mask)
            codes = (numbers >= 0).nonzero().flatten()
            self._tables = (key, numbers, codes // mask.shape[1], codes % mask.shape[1])
        return self._tables[1:]

    # ----------------------------------------------------------------------------------------------- scoring
    def followers_at(
        self,
        sequence: torch.Tensor,
        previous: torch.Tensor,
        first_cluster_token: int,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(followers, counts)``, each (…, T, successors): at each position of ``previous`` (…, T), the last T tokens
        of ``sequence`` (…, S), the followers of the last item read up to it and their counts (-1 and 0 where no
        item was read). With ``earlier`` > 0, each (…, T, (1 + earlier) x successors): the followers of the last
        1 + ``earlier`` items read, each once, with their counts weighted by ρ^k and summed. ``sequence`` may also
        be (…, T, S), one sequence per position ending with its token (a beam's).

        ``labels`` (…, T), while training: each position's target item (its cluster and rank tokens) has its own
        transition taken out of its count (leave-one-out)."""
        numbers, _, _ = self.tables()
        clusters, ranks = self.item_mask.shape
        code = pair_codes(sequence, shifted_right(sequence), first_cluster_token, clusters, ranks)
        item = torch.where(code >= 0, numbers[code.clamp(min=0)], -1)
        where = torch.where(item >= 0, torch.arange(item.shape[-1], device=item.device), -1)
        last = where.cummax(dim=-1).values  # the position of the last item read up to each position
        reads = [last]  # then the position of the item read before it, and so on
        for _ in range(self.earlier):
            before = reads[-1] - 1
            reads.append(torch.where(before >= 0, last.gather(-1, before.clamp(min=0)), -1))
        recent = torch.stack([torch.where(at >= 0, item.gather(-1, at.clamp(min=0)), -1) for at in reads], dim=-1)
        if sequence.dim() > previous.dim():  # one sequence per position: its last token's
            recent = recent[..., -1, :]
        else:
            recent = recent[..., recent.shape[-2] - previous.shape[-1] :, :]
        present = (recent >= 0).unsqueeze(-1)  # (…, T, 1 + earlier, 1)
        followers = torch.where(present, self.followers[recent.clamp(min=0)], -1)  # (…, T, 1 + earlier, successors)
        counts = self.counts[recent.clamp(min=0)] * (followers >= 0)
        if labels is not None:  # the target's own transition: from the last item, wherever that item was read
            target = self.target_items(labels, previous, first_cluster_token)[..., None, None]
            last_again = ((recent == recent[..., :1]) & (recent >= 0)).unsqueeze(-1)
            own = (followers == target) & (target >= 0) & last_again
            counts = (counts - own.to(counts.dtype)).clamp(min=0)
        if not self.earlier:
            return followers[..., 0, :], counts[..., 0, :]
        decay = torch.sigmoid(self.decay_logit) ** torch.arange(1 + self.earlier, device=counts.device)
        return merged_followers(followers.flatten(-2), (counts * decay.unsqueeze(-1).to(counts.dtype)).flatten(-2))

    def target_items(self, labels: torch.Tensor, previous: torch.Tensor, first_cluster_token: int) -> torch.Tensor:
        """(…, T): the item number each position's label belongs to, -1 where none: at a cluster step the item of the
        label and the label after it, at a rank step the item of the token read and the label."""
        numbers, _, _ = self.tables()
        clusters, ranks = self.item_mask.shape
        following = nn.functional.pad(labels[..., 1:], (0, 1), value=-1)
        at_cluster = pair_codes(following, labels, first_cluster_token, clusters, ranks)
        at_rank = pair_codes(labels, previous, first_cluster_token, clusters, ranks)
        code = torch.where(at_cluster >= 0, at_cluster, at_rank)
        return torch.where(code >= 0, numbers[code.clamp(min=0)], -1)

    def forward(
        self,
        logits: torch.Tensor,
        previous: torch.Tensor,
        followers: torch.Tensor,
        counts: torch.Tensor,
        first_cluster_token: int,
    ) -> torch.Tensor:
        """``logits`` (…, T, V) with the prior added (a forward, so that PEFT's trained copy is the one that scores):
        ``γ_c log(1 + n(j → c) / (a p(c)))`` on every cluster token where ``previous`` (…, T) is not a cluster token,
        and ``γ_r log(1 + n(j → i) / (a p(i)))`` on the rank token of each follower i in the cluster ``previous``
        opens. Returns a new tensor."""
        _, item_clusters, item_ranks = self.tables()
        num_clusters = self.item_mask.shape[0]
        weight = self.weight.to(logits.dtype)
        present = followers >= 0
        cluster = torch.where(present, item_clusters[followers.clamp(min=0)], num_clusters)
        current = previous.to(logits.device) - first_cluster_token
        opens = (current >= 0) & (current < num_clusters)  # a rank step: the cluster is chosen
        per_cluster = counts.new_zeros((*counts.shape[:-1], num_clusters + 1)).scatter_add(-1, cluster, counts)
        per_item, expected = self.expected_counts()  # once per call: the rank step's lift reads the same counts
        lift = torch.log1p(per_cluster[..., :num_clusters] / expected.to(counts.dtype))
        cluster_step = weight[0] * lift.to(logits.dtype) * (~opens).unsqueeze(-1)
        logits = torch.cat(
            [
                logits[..., :first_cluster_token],
                logits[..., first_cluster_token : first_cluster_token + num_clusters] + cluster_step,
                logits[..., first_cluster_token + num_clusters :],
            ],
            dim=-1,
        )
        inside = present & opens.unsqueeze(-1) & (cluster == current.unsqueeze(-1))
        columns = first_cluster_token + num_clusters + item_ranks[followers.clamp(min=0)]
        added = weight[1] * self.lift(followers, counts, per_item).to(logits.dtype) * inside
        return logits.scatter_add(-1, torch.where(inside, columns, first_cluster_token + num_clusters), added)

    def expected_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a p(i) per item, a p(c) per cluster)``: the pseudo-count a spread by popularity, what each count is read
        against (p: each item's count as a transition target plus one, as a share of their sum; an empty cluster
        gets the smallest positive number, so that its lift of no count is 0)."""
        _, item_clusters, _ = self.tables()
        smoothed = self.targets + 1.0
        per_item = self.log_pseudo_count.exp() * smoothed / smoothed.sum()
        per_cluster = per_item.new_zeros(self.item_mask.shape[0]).scatter_add(0, item_clusters, per_item)
        return per_item, per_cluster.clamp(min=torch.finfo(per_cluster.dtype).tiny)

    def lift(self, followers: torch.Tensor, counts: torch.Tensor, per_item: torch.Tensor | None = None) -> torch.Tensor:
        """``log(1 + n / (a p(i)))`` of each follower (0 where ``followers`` is -1); ``per_item``: a p(i), where the
        caller has :meth:`expected_counts` already."""
        if per_item is None:
            per_item, _ = self.expected_counts()
        return torch.log1p(counts / per_item[followers.clamp(min=0)]) * (followers >= 0)

    def item_scores(self, followers: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """``γ_r log(1 + n / (a p(i)))``: the prior's share of each follower's score in the all-items objective."""
        return self.weight[1] * self.lift(followers, counts)


def merged_followers(followers: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each follower of ``followers`` (…, M) once, with its ``counts`` summed, in item order, padded with -1 and 0
    (the scoring scatters one value per follower, so one that follows several recent items must come once)."""
    ordered, order = followers.sort(dim=-1, stable=True)
    counts = counts.gather(-1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    group = starts.long().cumsum(dim=-1) - 1  # -1 sorts first: the absent ones (count 0) share one group
    summed = torch.zeros_like(counts).scatter_add(-1, group, counts)
    return torch.full_like(ordered, -1).scatter(-1, group, ordered), summed


def transition_codes(sequences: list[list[tuple[int, int]]], num_ranks: int) -> torch.Tensor:
    """``(P, 2)`` item codes ``c * num_ranks + r`` of every consecutive pair in ``sequences`` (each a user's training
    items as (cluster, rank), in order): what :meth:`MetaIDChainPrior.set_counts` counts."""
    pairs = [
        (a[0] * num_ranks + a[1], b[0] * num_ranks + b[1])
        for sequence in sequences
        for a, b in itertools.pairwise(sequence)
    ]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
