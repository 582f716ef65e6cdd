"""Recommendation decoding over fixed-depth ID trees: every item is (cluster token, rank token, end).

HF ``generate`` with a constraint spends its time in its own per-step machinery, not in the constraint. Because
every META ID has the same depth, a decoder written for that tree runs the encoder once, scores every cluster in
one decoder step, expands the chosen clusters in one batched step and closes the beams in a third, with validity
masks built once from the vocabulary and no Python per beam.

Two modes:
- ``beam``: the same top-k as HF beam search with the same beam width (cumulative full-vocabulary log-probabilities,
  the end token's included);
- ``exact``: ranks *every* item by log p(cluster) + log p(rank | cluster), the probability of its ID tokens, so no
  beam can miss an item (the forced end token is not scored).

With the history in the decoder (``config.metaid_history_in_decoder``), each prompt has a decoder prefix, its history
items' ID tokens: it runs once per prompt before the first step, every beam shares it, and the item ends after its
rank token (no end token is decoded or scored: ``generate`` with the prefix as ``decoder_input_ids`` and two new
tokens gives the same lists).

Items can be left out per prompt (``exclude``, e.g. the user's history): they are cut from that prompt's tree before
decoding, so a beam search of width k ranks the other items and no decoding width is spent on them. Every item with
a finite score is what ``generate`` returns with a trie that lacks the excluded items; where fewer items are left
than beams, the list ends in -1 (score -inf) where ``generate`` repeats a beam at about -1e9.

The algorithm asks the model for two things only: the prompts' encoder states, and a step decoder
(:class:`StepDecoder`) that gives the next-token logits of one more token per beam. ``t5_fast_path`` provides both
for T5, written with T5's own modules for speed, once it has checked the modules it reads; where a check fails (a
transformers upgrade, another attention implementation), that half runs through the model's public forward
instead: the encoder's own forward and :class:`GenericStepDecoder`. ``decode_items(..., fast_path=False)`` takes the
public forward throughout.

Only torch, transformers and the standard library are imported: the file travels with a saved model for
``trust_remote_code`` loading.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

import torch
from transformers.modeling_outputs import BaseModelOutput

from .checks import check_choice, check_int
from .errors import InvalidArgumentError
from .item_tree import ItemTree
from .t5_fast_path import GENERIC, BeamDecoder, EncodedPrompts, check_fast_path, encode


class StepDecoder(Protocol):
    """What the algorithm asks of a decoder over a chunk of N encoded prompts."""

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam, ``tokens`` (N, B); return the next-token logits (N, B, V), float32, contiguous
        and the caller's to overwrite. After a step with one beam per prompt, each prompt may branch into B beams."""

    def select(self, parents: torch.Tensor) -> None:
        """Keep the beams ``parents`` ((N, B') indices into the last step's beams) for the next step."""


class GenericStepDecoder:
    """A :class:`StepDecoder` through the model's public forward only, for any seq2seq model that takes
    ``encoder_outputs``: each step re-runs the decoder on every beam's whole prefix (three tokens at most, so no
    cache is worth depending on its API), the prompt's encoder states repeated per beam. The logits are the
    forward's own, whatever it adds to them (the tree softmax's bias included), as ``generate`` sees them.
    ``context`` / ``context_mask`` (N, P): a left-padded decoder prefix before the first step (see
    :class:`BeamDecoder`), passed with its ``decoder_attention_mask``."""

    def __init__(
        self,
        model,
        encoded: EncodedPrompts,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> None:
        self.model = model
        self.states = encoded.padded(encoded.states)  # (N, L, d); the zeros at padding are masked out
        self.mask = encoded.mask
        # (N, B, T): the tokens fed so far, per beam, after the context
        self.prefix: torch.Tensor | None = None if context is None else context.unsqueeze(1)
        self.context_mask = context_mask

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        n, beams = tokens.shape
        fed = tokens.unsqueeze(-1)
        if self.prefix is not None:
            fed = torch.cat([self.prefix.expand(n, beams, -1), fed], dim=-1)
        self.prefix = fed
        decoder_mask = None
        if self.context_mask is not None:
            steps = fed.shape[-1] - self.context_mask.shape[1]
            decoder_mask = torch.cat([self.context_mask, self.context_mask.new_ones(n, steps)], dim=1)
            decoder_mask = decoder_mask.repeat_interleave(beams, dim=0)
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=self.states.repeat_interleave(beams, dim=0)),
            attention_mask=self.mask.repeat_interleave(beams, dim=0),
            decoder_input_ids=fed.flatten(0, 1),
            decoder_attention_mask=decoder_mask,
            use_cache=False,
        ).logits
        return logits[:, -1].to(torch.float32).contiguous().view(n, beams, -1)

    def select(self, parents: torch.Tensor) -> None:
        self.prefix = self.prefix.gather(1, parents.unsqueeze(-1).expand(-1, -1, self.prefix.shape[-1]))


@torch.no_grad()
def decode_items(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tree: ItemTree,
    k: int = 10,
    num_beams: int | None = None,
    mode: str = "beam",
    chunk_rows: int = 2048,
    exclude: list[list[int]] | None = None,
    fast_path: bool = True,
    decoder_prefix: list[list[int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per prompt: ``(item numbers (N, k), scores (N, k))``, best first; -1 where fewer exist.

    Args:
        model: a (possibly PEFT-wrapped) ``MetaIDForConditionalGeneration`` in eval mode.
        input_ids: the tokenized prompts, shape ``(N, L)``.
        attention_mask: their attention mask, shape ``(N, L)``.
        tree: the valid items (:class:`ItemTree`).
        k: how many items to return per prompt.
        num_beams: beam width of ``beam`` mode; must be ≥ k. Default: the model's ``config.metaid_num_beams`` (the
            width it was set to decode with) where that is above k, else ``k``, as in the paper's protocol.
        mode: ``"beam"`` or ``"exact"`` (see the module docstring).
        chunk_rows: decoder beams (prompts × clusters expanded) per pass; bounds memory in ``exact`` mode.
        exclude: per prompt, item numbers (positions in ``tree.items``) that must not come out, e.g. the history;
            they are removed from that prompt's tree before decoding.
        fast_path: take T5's fast encoder and decoder where their checks pass (see ``t5_fast_path``); ``False``:
            the model's public forward throughout (slower; the same items, scores to float rounding).
        decoder_prefix: per prompt, the token ids the decoder reads after its start token and before the item (the
            history items' ID tokens, for a model with ``config.metaid_history_in_decoder``); ``[]``: none.
    """
    check_choice("mode", mode, ("beam", "exact"))
    check_int("k", k, minimum=1)
    check_int("chunk_rows", chunk_rows, minimum=1)
    if num_beams is None:
        num_beams = max(k, getattr(model.config, "metaid_num_beams", 0) or 0)
    check_int("num_beams", num_beams, minimum=1)
    if mode == "beam" and num_beams < k:
        raise InvalidArgumentError(f"num_beams ({num_beams}) must be at least k ({k})")
    for name, rows in (("exclude", exclude), ("decoder_prefix", decoder_prefix)):
        if rows is not None and len(rows) != input_ids.shape[0]:
            raise InvalidArgumentError(f"{name} has {len(rows)} rows for {input_ids.shape[0]} prompts")
    tree = tree.to(input_ids.device)
    if input_ids.shape[0] == 0 or not tree.items:
        empty = torch.full((input_ids.shape[0], k), -1, dtype=torch.long, device=input_ids.device)
        return empty, torch.full((input_ids.shape[0], k), float("-inf"), device=input_ids.device)
    if mode == "exact":
        width = len(tree.clusters_with_items)
    else:
        width = min(num_beams, tree.num_clusters)
    step = max(1, chunk_rows // max(width, 1))
    path = check_fast_path(model) if fast_path else GENERIC
    ends = not getattr(model.config, "metaid_history_in_decoder", False)  # else the item ends after its rank
    parts = []
    with _generation_augmentation(model):  # the decoder's F too, where it has one
        for start in range(0, input_ids.shape[0], step):
            rows = slice(start, start + step)
            encoded = _encoder_states(model, input_ids[rows], attention_mask[rows], fast=path.encoder)
            first, context = _decoder_inputs(model.config.decoder_start_token_id, input_ids, rows, decoder_prefix)
            decoder = (BeamDecoder if path.decoder else GenericStepDecoder)(model, encoded, *context)
            banned = None if exclude is None else tree.exclusion_mask(exclude[rows], input_ids.device)
            parts.append(_decode_chunk(decoder, first, tree, k, num_beams, mode, banned, ends))
    items, scores = (torch.cat(values) for values in zip(*parts, strict=True))
    return items, scores


def _decoder_inputs(start_token: int, input_ids: torch.Tensor, rows: slice, prefix: list[list[int]] | None):
    """``(first tokens (N, 1), (context, context mask) or ())`` of a chunk: without prefixes every prompt starts
    with the start token; with them the decoder first reads ``[start, *prefix[:-1]]`` (left-padded to the longest,
    mask 0 at padding) and is then fed each prefix's last token (the start token for an empty prefix)."""
    count = len(range(*rows.indices(input_ids.shape[0])))
    first = torch.full((count, 1), start_token, dtype=torch.long, device=input_ids.device)
    if prefix is None or not any(prefix[rows]):
        return first, ()
    sequences = [[start_token, *tokens] for tokens in prefix[rows]]
    width = max(len(tokens) for tokens in sequences) - 1
    context = torch.full((count, width), start_token, dtype=torch.long)
    mask = torch.zeros((count, width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        first[row, 0] = tokens[-1]
        if len(tokens) > 1:
            context[row, width - len(tokens) + 1 :] = torch.as_tensor(tokens[:-1])
            mask[row, width - len(tokens) + 1 :] = 1
    return first, (context.to(input_ids.device), mask.to(input_ids.device))


def _decode_chunk(
    decoder: StepDecoder,
    start: torch.Tensor,
    tree: ItemTree,
    k: int,
    num_beams: int,
    mode: str,
    banned=None,
    ends: bool = True,
):
    """One chunk of N prompts, ``start`` (N, 1) the first tokens fed to the decoder; ``banned`` ((N, num_items) bool
    or None) marks the items cut from each prompt's tree; ``ends``: an item ends with the end token (scored)."""
    n, device = start.shape[0], start.device

    # Level 1: every cluster scored in one decoder step.
    cluster_tokens = slice(tree.first_cluster_token, tree.first_cluster_token + tree.num_clusters)
    cluster_scores = _log_probs(decoder.step(start)[:, 0], cluster_tokens)  # (N, C)
    if mode == "exact":
        return _rank_every_item(decoder, tree, cluster_scores, k, banned)

    open_clusters = tree.cluster_has_items
    if banned is not None:  # a cluster whose items are all cut is a dead branch of this prompt's trie
        cut = torch.zeros(n, tree.num_clusters, device=device).index_add_(1, tree.item_clusters, banned.float())
        open_clusters = cut < tree.cluster_sizes
    cluster_scores = cluster_scores.masked_fill(~open_clusters, float("-inf"))
    top_cluster_scores, top_clusters = cluster_scores.topk(min(num_beams, tree.num_clusters), dim=-1)  # (N, W)
    width = top_clusters.shape[1]

    # Level 2: the chosen clusters expanded in one batched step; only the rank tokens of real items are read.
    logits = decoder.step(top_clusters + tree.first_cluster_token)  # (N, W, V)
    rank_tokens = tree.cluster_rank_tokens.index_select(0, top_clusters.flatten()).view(n, width, -1)  # (N, W, M)
    totals = logits.gather(2, rank_tokens)
    totals.sub_(_normaliser(logits).unsqueeze(-1))  # log p(rank | cluster)
    totals.add_(tree.cluster_penalty.index_select(0, top_clusters.flatten()).view(totals.shape))
    totals.add_(top_cluster_scores.unsqueeze(-1))  # + log p(cluster), the order HF adds them in
    candidates = tree.cluster_items.index_select(0, top_clusters.flatten()).view(n, -1)  # (N, W * M)
    if banned is not None:
        totals.view(n, -1).masked_fill_(banned.gather(1, candidates.clamp(min=0)) & (candidates >= 0), float("-inf"))
    keep = min(num_beams, totals[0].numel())
    best_scores, flat = totals.view(n, -1).topk(keep, dim=-1)  # (N, keep)
    parents = torch.div(flat, totals.shape[-1], rounding_mode="floor")
    best_items = candidates.gather(1, flat)
    if not ends:  # the item is complete after its rank token: the best candidates are the beams
        items = best_items[:, :k].masked_fill(torch.isinf(best_scores[:, :k]), -1)
        return _pad(items, k, -1), _pad(best_scores[:, :k], k, float("-inf"))

    # Level 3: the end token closes every beam; its log-probability is part of HF's beam score.
    decoder.select(parents)
    end_scores = _log_probs(decoder.step(rank_tokens.view(n, -1).gather(1, flat)), tree.eos_token_id)
    best_scores, order = (best_scores + end_scores).topk(min(k, keep), dim=-1)
    items = best_items.gather(1, order).masked_fill(torch.isinf(best_scores), -1)
    return _pad(items, k, -1), _pad(best_scores, k, float("-inf"))


def _rank_every_item(decoder: StepDecoder, tree: ItemTree, cluster_scores: torch.Tensor, k: int, banned=None):
    """Exact mode: log p(cluster) + log p(rank | cluster) of every item, read straight from the logits of every
    cluster that holds an item (no dense cluster x rank table), then the top ``k``."""
    n = cluster_scores.shape[0]
    logits = decoder.step((tree.clusters_with_items + tree.first_cluster_token).expand(n, -1))  # (N, W, V)
    columns = tree.item_slots * logits.shape[-1] + tree.item_rank_tokens
    item_scores = logits.view(n, -1).index_select(1, columns)  # (N, num_items) rank logits
    item_scores.sub_(_normaliser(logits).index_select(1, tree.item_slots))
    item_scores.add_(cluster_scores.index_select(1, tree.item_clusters))
    if banned is not None:
        item_scores.masked_fill_(banned, float("-inf"))
    best_scores, items = item_scores.topk(min(k, item_scores.shape[1]), dim=-1)
    items = items.masked_fill(torch.isinf(best_scores), -1)
    return _pad(items, k, -1), _pad(best_scores, k, float("-inf"))


def _encoder_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, fast: bool = True) -> EncodedPrompts:
    """The encoder output ``generate`` would see (without F where the config reproduces the research code), for the
    real tokens: by T5's fast encoder (``fast``, once :func:`check_fast_path` passed it) or the encoder's forward."""
    encoder = model.get_encoder()
    index = attention_mask.flatten().nonzero().flatten()
    with _generation_augmentation(model):
        if fast:
            return EncodedPrompts(encode(encoder, input_ids, attention_mask, index), index, attention_mask)
        states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return EncodedPrompts(states.flatten(0, 1)[index], index, attention_mask)


def _generation_augmentation(model):
    """F as ``generate`` applies it: skipped (encoder and decoder alike) where the config reproduces the research
    code's generation, otherwise as in training."""
    encoder = model.get_encoder()
    skip_f = getattr(model.config, "metaid_augment_generation", True) is False
    if skip_f and hasattr(encoder, "augmentation_disabled"):
        return encoder.augmentation_disabled()
    return contextlib.nullcontext()


def _pad(values: torch.Tensor, k: int, fill) -> torch.Tensor:
    if values.shape[1] >= k:
        return values[:, :k]
    extra = torch.full((values.shape[0], k - values.shape[1]), fill, dtype=values.dtype, device=values.device)
    return torch.cat([values, extra], dim=1)


def _normaliser(logits: torch.Tensor) -> torch.Tensor:
    """log sum exp over the vocabulary, computed as log-softmax computes it (max + log sum exp(x - max)), in place:
    ``logits`` is consumed."""
    peak = logits.amax(dim=-1, keepdim=True)
    return logits.sub_(peak).exp_().sum(dim=-1, keepdim=True).log_().add_(peak).squeeze(-1)


def _log_probs(logits: torch.Tensor, tokens: slice | int) -> torch.Tensor:
    """The full-vocabulary log-softmax of ``logits`` (consumed), for the ``tokens`` slice only.

    ``generate`` normalises over the whole vocabulary too; only the slice is ever read, so only it is written out.
    """
    picked = logits[..., tokens].clone()
    normaliser = _normaliser(logits)
    return picked.sub_(normaliser if isinstance(tokens, int) else normaliser.unsqueeze(-1))
