"""Recommendation decoding over fixed-depth ID trees: every item is (cluster token, rank token, end).

HF ``generate`` with a constraint spends its time in its own per-step machinery, not in the constraint. Because
every META ID has the same depth, a decoder written for that tree runs the encoder once, scores every cluster in
one decoder step, expands the chosen clusters in one batched step and closes the beams in a third, with validity
masks built once from the vocabulary and no Python per beam. The decoder steps reuse a key/value cache, and the
beams of a prompt share its cross-attention keys and values (``generate`` projects the encoder output once per
beam), so each step costs one token per beam. The encoder runs on the real tokens only (padding is about a quarter
of a batch of prompts) and gives the model encoder's output bit for bit.

Two modes:
- ``beam``: the same top-k as HF beam search with the same beam width (cumulative full-vocabulary log-probabilities,
  the end token's included);
- ``exact``: ranks *every* item by log p(cluster) + log p(rank | cluster), the probability of its ID tokens, so no
  beam can miss an item (the forced end token is not scored).

Items can be left out per prompt (``exclude``, e.g. the user's history): they are cut from that prompt's tree before
decoding, so a beam search of width k ranks the other items and no decoding width is spent on them. Every item with
a finite score is what ``generate`` returns with a trie that lacks the excluded items; where fewer items are left
than beams, the list ends in -1 (score -inf) where ``generate`` repeats a beam at about -1e9.

Only torch is imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

import contextlib
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


class _BeamDecoder:
    """T5's decoder run one token at a time for many beams per prompt, the beams kept as an extra tensor dimension.

    Every beam of a prompt attends to the same encoder states, so the cross-attention keys and values are computed
    once per prompt (not once per beam, as ``generate`` does after expanding the encoder output) and each beam's
    queries attend to them as extra query positions; the decoder start token's self-attention state is shared the
    same way. The arithmetic is T5's own: the layer norms, projections and feed-forward blocks are the model's
    modules (so PEFT adapters on them apply), the relative position bias is the model's ``compute_bias``.
    Dropout is not applied: this is inference code.
    """

    def __init__(self, model, encoded: _EncodedPrompts) -> None:
        self.decoder = model.decoder
        self.lm_head = model.lm_head
        config = model.config
        self.tree_bias = model.next_token_bias if getattr(config, "metaid_tree_softmax", False) else None
        self.output_scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", False) else None
        first = self.decoder.block[0].layer[0].SelfAttention
        self.heads, self.head_dim = first.n_heads, first.key_value_proj_dim
        dtype, device = encoded.states.dtype, encoded.states.device
        # (1, H, 3, 3): decoder positions start, cluster, rank; row p holds the bias of position p's query.
        self.position_bias = first.compute_bias(3, 3, device=device).to(dtype)
        n, length = encoded.mask.shape
        self.cross_mask = torch.zeros(n, 1, 1, length, dtype=dtype, device=device)
        self.cross_mask = self.cross_mask.masked_fill(~encoded.mask.bool()[:, None, None, :], torch.finfo(dtype).min)
        self.cross = []  # per layer: keys (N, H, D, L), values (N, H, L, D)
        for block in self.decoder.block:
            attention = block.layer[1].EncDecAttention
            # Projected for the real tokens only; padding keys and values are masked out, so zeros do.
            keys, values = encoded.padded(_projections(encoded.states, (attention.k, attention.v))).chunk(2, dim=-1)
            # Laid out once for the two products (keys transposed), instead of a copy at every step.
            self.cross.append(
                (self._heads(keys).permute(0, 2, 3, 1).contiguous(), self._heads(values).transpose(1, 2).contiguous())
            )
        # Per layer, per decoder position: (keys, values) of shape (N, B, H, D), B = 1 where all beams share it.
        self.cache: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self.decoder.block]

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        return states.view(*states.shape[:-1], self.heads, self.head_dim)

    def select(self, parents: torch.Tensor) -> None:
        """Keep the beams ``parents`` ((N, B') indices into the current beams) for the next step."""
        n, beams = parents.shape[0], self.cache[0][-1][0].shape[1]
        rows = (parents + torch.arange(n, device=parents.device)[:, None] * beams).flatten()

        def pick(t: torch.Tensor) -> torch.Tensor:
            if t.shape[1] == 1:  # shared by every beam
                return t
            return t.flatten(0, 1).index_select(0, rows).view(n, parents.shape[1], *t.shape[2:])

        self.cache = [[(pick(k), pick(v)) for k, v in layer] for layer in self.cache]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam (``tokens``: (N, B)); return the next-token logits (N, B, V) in float32."""
        position = len(self.cache[0])
        hidden = self.decoder.embed_tokens(tokens)  # (N, B, d)
        bias = self.position_bias[0, :, position, : position + 1].T  # (T, H)
        for index, block in enumerate(self.decoder.block):
            self_layer, cross_layer, ff_layer = block.layer[0], block.layer[1], block.layer[-1]
            attention = self_layer.SelfAttention
            normed = _norm(self_layer.layer_norm, hidden)
            query = self._heads(attention.q(normed))  # (N, B, H, D)
            past = self.cache[index]
            past.append((self._heads(attention.k(normed)), self._heads(attention.v(normed))))
            # At most three positions: one query per beam against each position's key, without a batched product.
            # (N, B, T, H): positions on a middle dimension, where softmax vectorises over the heads.
            scores = torch.stack([(query * key).sum(-1) for key, _ in past], dim=2) + bias
            weights = torch.softmax(scores, dim=2).unsqueeze(-1)
            attended = sum(weights[:, :, t] * value for t, (_, value) in enumerate(past))
            hidden = _clamp_fp16(hidden.add_(attention.o(attended.flatten(2))))

            attention = cross_layer.EncDecAttention
            normed = _norm(cross_layer.layer_norm, hidden)
            query = self._heads(attention.q(normed)).transpose(1, 2)  # (N, H, B, D): beams as query positions
            keys, values = self.cross[index]
            weights = torch.softmax(query @ keys + self.cross_mask, dim=-1)
            attended = (weights.to(values.dtype) @ values).transpose(1, 2)  # (N, B, H, D)
            hidden = _clamp_fp16(hidden.add_(attention.o(attended.flatten(2))))
            hidden = _add_feed_forward(ff_layer, hidden)
        hidden = _norm(self.decoder.final_layer_norm, hidden)
        if self.output_scale is not None:
            hidden = hidden * self.output_scale
        logits = self.lm_head(hidden).float()
        if self.tree_bias is not None:  # the model's forward adds the same bias: generate sees it too
            logits += self.tree_bias(tokens, logits.shape[-1])
        return logits


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


def _projections(states: torch.Tensor, projections) -> torch.Tensor:
    """Several projections of the same rows side by side, ``(..., sum of widths)``: one matrix product when they
    are all plain bias-free ``Linear`` layers (a PEFT-wrapped one keeps its own call, adapters included)."""
    if all(type(p) is torch.nn.Linear and p.bias is None for p in projections):
        return torch.nn.functional.linear(states, torch.cat([p.weight for p in projections]))
    return torch.cat([p(states) for p in projections], dim=-1)


def _norm(layer_norm, hidden: torch.Tensor) -> torch.Tensor:
    """T5LayerNorm's arithmetic with one full-size temporary fewer (float32; otherwise the module itself).

    On CPU every fresh multi-megabyte tensor costs page faults, which is most of a small decoder's time."""
    weight = getattr(layer_norm, "weight", None)
    if not hasattr(layer_norm, "variance_epsilon") or hidden.dtype != torch.float32 or weight.dtype != torch.float32:
        return layer_norm(hidden)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    return (hidden * torch.rsqrt(variance + layer_norm.variance_epsilon)).mul_(weight)


def _add_feed_forward(ff_layer, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` + T5's feed-forward block of it, in place for the plain ReLU block in float32 (same arithmetic)."""
    dense = ff_layer.DenseReluDense
    plain = type(dense).__name__ == "T5DenseActDense" and isinstance(dense.act, torch.nn.ReLU)
    if not plain or hidden.dtype != torch.float32 or dense.wo.weight.dtype != torch.float32:
        return _clamp_fp16(ff_layer(hidden))
    inner = torch.relu_(dense.wi(_norm(ff_layer.layer_norm, hidden)))
    return hidden.add_(dense.wo(inner))


def _clamp_fp16(hidden: torch.Tensor) -> torch.Tensor:
    """T5's guard against fp16 overflow between sub-layers (a no-op in other dtypes)."""
    if hidden.dtype != torch.float16:
        return hidden
    limit = torch.finfo(torch.float16).max - (1000 if torch.isinf(hidden).any() else 0)
    return hidden.clamp(min=-limit, max=limit)


@dataclass
class _EncodedPrompts:
    """Encoder output of the real (non-padding) tokens only, packed as rows, and where they sit in the batch."""

    states: torch.Tensor  # (T, d): one row per real token
    index: torch.Tensor  # (T,): position of each row in the flattened (N * L) batch
    mask: torch.Tensor  # (N, L) attention mask

    def padded(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` (T, w) laid out as (N, L, w), zeros at padding."""
        return _unpack(rows, self.index, self.mask.shape)


def _unpack(rows: torch.Tensor, index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Packed token rows (T, w) back in the padded batch layout ``shape + (w,)``, zeros at padding."""
    full = rows.new_zeros(shape[0] * shape[1], rows.shape[-1])
    full[index] = rows
    return full.view(*shape, -1)


def _encoder_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _EncodedPrompts:
    """The encoder output ``generate`` would see (without F where the config reproduces the research code)."""
    encoder = model.get_encoder()
    skip_f = getattr(model.config, "metaid_augment_generation", True) is False
    context = encoder.augmentation_disabled() if skip_f and hasattr(encoder, "augmentation_disabled") else None
    index = attention_mask.flatten().nonzero().flatten()
    with context if context is not None else contextlib.nullcontext():
        if _fast_encoder_applies(encoder):
            return _EncodedPrompts(_encode(encoder, input_ids, attention_mask, index), index, attention_mask)
        states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return _EncodedPrompts(states.flatten(0, 1)[index], index, attention_mask)


def _fast_encoder_applies(encoder) -> bool:
    """The T5 encoder in eval mode with SDPA attention: what :func:`_encode` reproduces bit for bit."""
    config = encoder.config
    return not encoder.training and getattr(config, "_attn_implementation", None) == "sdpa" and not config.is_decoder


def _encode(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """T5's encoder forward with the model's own modules, for the real tokens only: (T, d).

    Projections, layer norms and feed-forward blocks act on each token alone, so they run on the packed real tokens
    (padding is a quarter of a typical batch of prompts); only attention sees the padded (N, L) layout, with the
    attention mask (relative position bias, -inf at padding) built once for all layers, where transformers
    rebuilds it in every layer. Same kernels on the same values: the real tokens' states are identical.
    """
    n, length = input_ids.shape
    ids = input_ids.flatten()[index]
    hidden = encoder.embed_tokens(ids)
    if getattr(encoder, "augmentation_active", False):
        hidden = hidden + encoder.augmentation_for(ids)
    first = encoder.block[0].layer[0].SelfAttention
    bias = first.compute_bias(length, length, device=hidden.device)
    mask = torch.where(attention_mask.bool()[:, None, None, :], bias, torch.finfo(hidden.dtype).min).contiguous()
    mask = mask.to(hidden.dtype)
    for block in encoder.block:
        self_layer, ff_layer = block.layer[0], block.layer[-1]
        attention = self_layer.SelfAttention
        normed = _norm(self_layer.layer_norm, hidden)
        projected = _projections(normed, (attention.q, attention.k, attention.v))
        shape = (n, length, 3, attention.n_heads, attention.key_value_proj_dim)
        padded = _unpack(projected, index, input_ids.shape).view(shape)
        query, key, value = (part.transpose(1, 2) for part in padded.unbind(2))
        attended = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, scale=attention.scaling
        )
        attended = attended.transpose(1, 2).reshape(n * length, -1)[index]
        hidden = _clamp_fp16(hidden.add_(attention.o(attended)))
        hidden = _add_feed_forward(ff_layer, hidden)
    return _norm(encoder.final_layer_norm, hidden)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per prompt: ``(item numbers (N, k), scores (N, k))``, best first; -1 where fewer exist.

    Args:
        model: a (possibly PEFT-wrapped) ``MetaIDForConditionalGeneration`` in eval mode.
        input_ids, attention_mask: the tokenized prompts, shape ``(N, L)``.
        tree: the valid items (:class:`ItemTree`).
        k: how many items to return per prompt.
        num_beams: beam width of ``beam`` mode (defaults to ``k``, as in the paper's protocol); must be ≥ k.
        mode: ``"beam"`` or ``"exact"`` (see the module docstring).
        chunk_rows: decoder beams (prompts × clusters expanded) per pass; bounds memory in ``exact`` mode.
        exclude: per prompt, item numbers (positions in ``tree.items``) that must not come out, e.g. the history;
            they are removed from that prompt's tree before decoding.
    """
    if mode not in ("beam", "exact"):
        raise ValueError(f"mode must be 'beam' or 'exact', got {mode!r}")
    num_beams = num_beams or k
    if mode == "beam" and num_beams < k:
        raise ValueError(f"num_beams ({num_beams}) must be at least k ({k})")
    if exclude is not None and len(exclude) != input_ids.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} rows for {input_ids.shape[0]} prompts")
    tree = tree.to(input_ids.device)
    if input_ids.shape[0] == 0 or not tree.items:
        empty = torch.full((input_ids.shape[0], k), -1, dtype=torch.long, device=input_ids.device)
        return empty, torch.full((input_ids.shape[0], k), float("-inf"), device=input_ids.device)
    if mode == "exact":
        width = len(tree.clusters_with_items)
    else:
        width = min(num_beams, tree.num_clusters)
    step = max(1, chunk_rows // max(width, 1))
    parts = []
    for start in range(0, input_ids.shape[0], step):
        encoded = _encoder_states(model, input_ids[start : start + step], attention_mask[start : start + step])
        banned = None if exclude is None else tree.exclusion_mask(exclude[start : start + step], input_ids.device)
        parts.append(_decode_chunk(model, encoded, tree, k, num_beams, mode, banned))
    items, scores = (torch.cat(values) for values in zip(*parts, strict=True))
    return items, scores


def _decode_chunk(model, encoded: _EncodedPrompts, tree: ItemTree, k: int, num_beams: int, mode: str, banned=None):
    """One chunk of prompts; ``banned`` ((N, num_items) bool or None) marks the items cut from each prompt's tree."""
    n, device = encoded.mask.shape[0], encoded.states.device
    decoder = _BeamDecoder(model, encoded)
    start = torch.full((n, 1), model.config.decoder_start_token_id, dtype=torch.long, device=device)

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

    # Level 3: the end token closes every beam; its log-probability is part of HF's beam score.
    decoder.select(parents)
    end_scores = _log_probs(decoder.step(rank_tokens.view(n, -1).gather(1, flat)), tree.eos_token_id)
    best_scores, order = (best_scores + end_scores).topk(min(k, keep), dim=-1)
    items = best_items.gather(1, order).masked_fill(torch.isinf(best_scores), -1)
    return _pad(items, k, -1), _pad(best_scores, k, float("-inf"))


def _rank_every_item(decoder: _BeamDecoder, tree: ItemTree, cluster_scores: torch.Tensor, k: int, banned=None):
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


def _pad(values: torch.Tensor, k: int, fill) -> torch.Tensor:
    if values.shape[1] >= k:
        return values[:, :k]
    extra = torch.full((values.shape[0], k - values.shape[1]), fill, dtype=values.dtype, device=values.device)
    return torch.cat([values, extra], dim=1)


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
