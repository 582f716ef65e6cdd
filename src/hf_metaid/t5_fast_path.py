"""T5's encoder and decoder run with the model's own modules, laid out for decoding fixed-depth ID trees fast.

The decoder steps reuse a key/value cache, and the beams of a prompt share its cross-attention keys and values
(``generate`` projects the encoder output once per beam), so each step costs one token per beam. The encoder runs
on the real tokens only (padding is about a quarter of a batch of prompts) and gives the model encoder's output
bit for bit.

This is the code that knows T5's internals (``block[i].layer[j]``, the attention projections, the relative position
bias), so it is the code a transformers upgrade can break. :func:`check_fast_path` checks what it reads in a model,
and what it takes for granted, before any use; where something is missing or differs, that half (encoder or decoder)
runs through the model's own forward instead (``decoding``), and one warning per model class names the missing piece.

Only torch and the standard library are imported: the file travels with a saved model for ``trust_remote_code``
loading.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FastPath:
    """Which halves of the fast path a model takes; the other runs through the model's own forward."""

    encoder: bool
    decoder: bool


GENERIC = FastPath(encoder=False, decoder=False)
_WARNED: set[type] = set()  # model classes already told that the fast path does not fit them
# What the fast code reads in every T5Attention it uses.
_ATTENTION = ("q", "k", "v", "o", "n_heads", "key_value_proj_dim", "scaling")


def check_fast_path(model) -> FastPath:
    """Check what :func:`encode` and :class:`BeamDecoder` read in ``model``'s T5 modules, and what they take for
    granted (SDPA attention in the encoder, T5's unscaled scores in the decoder), before any use.

    A half whose check fails is not taken, and the first time a model class fails one, a warning names what is
    missing: results stay right through the model's forward, only slower. An encoder in training mode takes its
    forward too, silently (dropout is part of it there, and nothing is missing).
    """
    encoder = model.get_encoder()
    encoder_gap, decoder_gap = _encoder_gap(encoder), _decoder_gap(model)
    gaps = {half: gap for half, gap in (("encoder", encoder_gap), ("decoder", decoder_gap)) if gap is not None}
    if gaps and type(model) not in _WARNED:
        _WARNED.add(type(model))
        warnings.warn(
            f"{type(model).__name__}: the T5 fast decoding path needs {' and '.join(gaps.values())}; decoding "
            f"uses the model's own forward for the {' and '.join(gaps)} instead (same items, slower)",
            stacklevel=2,
        )
    return FastPath(encoder=encoder_gap is None and not encoder.training, decoder=decoder_gap is None)


def _encoder_gap(encoder) -> str | None:
    """What :func:`encode` needs and ``encoder`` lacks (None: nothing)."""
    config = encoder.config
    implementation = getattr(config, "_attn_implementation", None)
    if implementation != "sdpa":  # encode reproduces the SDPA kernel's output bit for bit, not another's
        return f"encoder.config._attn_implementation == 'sdpa' (it is {implementation!r})"
    if getattr(config, "is_decoder", True):
        return "encoder.config.is_decoder == False"
    return _stack_gap(encoder, "encoder", ("SelfAttention",))


def _decoder_gap(model) -> str | None:
    """What :class:`BeamDecoder` needs and ``model`` lacks or has otherwise than T5 (None: nothing)."""
    attentions = ("SelfAttention", "EncDecAttention")
    adjust = ("adjust_logits",) if _adjusts_logits(model.config) else ()
    gap = _lacks(model, "model", ("decoder", "lm_head", *adjust)) or _stack_gap(model.decoder, "decoder", attentions)
    if gap is not None:
        return gap
    first = model.decoder.block[0].layer[0].SelfAttention
    for i, block in enumerate(model.decoder.block):
        for j, name in enumerate(attentions):
            attention, where = getattr(block.layer[j], name), f"decoder.block[{i}].layer[{j}].{name}"
            # One head layout for every layer, unscaled scores (T5 folds the scale into its weights) and no position
            # bias in cross-attention: what the beam decoder computes.
            if (attention.n_heads, attention.key_value_proj_dim) != (first.n_heads, first.key_value_proj_dim):
                return f"{where} with block 0's head layout"
            if attention.scaling != 1.0:
                return f"{where}.scaling == 1.0 (it is {attention.scaling})"
            if j == 1 and getattr(attention, "has_relative_attention_bias", False):
                return f"{where} without a relative position bias"
    return None


def _adjusts_logits(config) -> bool:
    """Whether the model adds to its language-model head's logits (tree softmax, item output, repeat bias, chain
    prior)."""
    names = ("metaid_tree_softmax", "metaid_item_output", "metaid_repeat_bias", "metaid_chain_prior")
    return any(bool(getattr(config, name, False)) for name in names)


def _stack_gap(stack, path: str, attentions: tuple[str, ...]) -> str | None:
    """What the fast code needs in a T5 stack and ``stack`` lacks: the embeddings, the final layer norm and, per block,
    the sub-layers ``attentions`` in that order (each with its layer norm and T5's attention attributes) then the
    feed-forward one; the first block's self-attention computes the relative position bias of every layer."""
    gap = _lacks(stack, path, ("embed_tokens", "block", "final_layer_norm"))
    if gap is not None:
        return gap
    if len(stack.block) == 0:
        return f"{path}.block with at least one block"
    for i, block in enumerate(stack.block):
        layers = getattr(block, "layer", ())
        if len(layers) != len(attentions) + 1:
            return f"{path}.block[{i}].layer of {len(attentions) + 1} sub-layers (it has {len(layers)})"
        for j, name in enumerate(attentions):
            where = f"{path}.block[{i}].layer[{j}]"
            gap = _lacks(layers[j], where, ("layer_norm", name)) or _lacks(
                getattr(layers[j], name), f"{where}.{name}", _ATTENTION
            )
            if gap is not None:
                return gap
        gap = _feed_forward_gap(layers[-1], f"{path}.block[{i}].layer[{len(attentions)}]")
        if gap is not None:
            return gap
    first = stack.block[0].layer[0].SelfAttention
    return _lacks(first, f"{path}.block[0].layer[0].SelfAttention", ("compute_bias", "relative_attention_bias"))


def _feed_forward_gap(ff_layer, where: str) -> str | None:
    """T5LayerFF's parts that :func:`_add_feed_forward` reads (its in-place shortcut for T5DenseActDense reads that
    block's own layers too)."""
    gap = _lacks(ff_layer, where, ("layer_norm", "DenseReluDense"))
    dense = getattr(ff_layer, "DenseReluDense", None)
    if gap is None and type(dense).__name__ == "T5DenseActDense":
        gap = _lacks(dense, f"{where}.DenseReluDense", ("wi", "wo", "act"))
    return gap


def _lacks(module, path: str, names: tuple[str, ...]) -> str | None:
    """``path.name`` of the first of ``names`` that ``module`` lacks (None: it has them all)."""
    return next((f"{path}.{name}" for name in names if not hasattr(module, name)), None)


class BeamDecoder:
    """T5's decoder run one token at a time for many beams per prompt, the beams kept as an extra tensor dimension.

    Every beam of a prompt attends to the same encoder states, so the cross-attention keys and values are computed
    once per prompt (not once per beam, as ``generate`` does after expanding the encoder output) and each beam's
    queries attend to them as extra query positions; the decoder start token's self-attention state is shared the
    same way. The arithmetic is T5's own: the layer norms, projections and feed-forward blocks are the model's
    modules (so PEFT adapters on them apply), the relative position bias is the model's ``compute_bias``.
    Dropout is not applied: this is inference code.

    ``context`` ((N, P) token ids, left-padded, ``context_mask`` 1 at real tokens) is a decoder prefix that comes
    before the first token fed to :meth:`step` (the history in the decoder): it runs once per prompt, in one pass,
    and every beam of the prompt attends to its keys and values. Left padding keeps T5's relative positions right for
    every row (only differences of positions count), and masked keys drop the padding.
    """

    def __init__(
        self,
        model,
        encoded: EncodedPrompts,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> None:
        self.decoder = model.decoder
        self.lm_head = model.lm_head
        config = model.config
        self.adjust_logits = model.adjust_logits if _adjusts_logits(config) else None
        self.output_scale = config.d_model**-0.5 if getattr(config, "scale_decoder_outputs", False) else None
        first = self.decoder.block[0].layer[0].SelfAttention
        self.heads, self.head_dim = first.n_heads, first.key_value_proj_dim
        dtype, device = encoded.states.dtype, encoded.states.device
        # (1, H, P + 3, P + 3): the context's P positions, then the start (or last context) token, cluster, rank;
        # row p holds the bias of position p's query.
        self.context_length = 0 if context is None else context.shape[1]
        positions = self.context_length + 3
        self.position_bias = first.compute_bias(positions, positions, device=device).to(dtype)
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
        # Per layer: the context's keys and values (N, H, P, D), shared by every beam; its mask (N, 1, 1, P), additive.
        self.context: list[tuple[torch.Tensor, torch.Tensor]] = []
        # (N, 1): the token before the first one fed to step (the context's last; none without a context).
        self.previous = torch.full((n, 1), -1, dtype=torch.long, device=device)
        # (N, B, S): each beam's tokens so far, context included, where the repeat bias or the chain prior reads them
        # (else None).
        self.sequence = None
        if getattr(config, "metaid_repeat_bias", False) or getattr(config, "metaid_chain_prior", 0):
            self.sequence = torch.empty((n, 1, 0), dtype=torch.long, device=device)
            if context is not None:
                self.sequence = context.unsqueeze(1)
        if context is not None:
            self.previous = context[:, -1:].masked_fill(~context_mask[:, -1:].bool(), -1)
            mask = context_mask.bool()[:, None, None, :]
            self.context_mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(
                ~mask, torch.finfo(dtype).min
            )
            self._run_context(context, mask)

    def _run_context(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        """The decoder over the context tokens (N, P), all positions at once (causal, padding masked), keeping each
        layer's self-attention keys and values (zeros at padding). As :func:`encode` does, the per-token work runs on
        the real tokens only (histories differ in length, so padding can be most of a batch), and the last layer
        stops at its keys and values: the first step feeds the next token, so no context output is read."""
        length = tokens.shape[1]
        index = mask.flatten().nonzero().flatten()
        causal = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
        bias = self.position_bias[:, :, :length, :length]
        self_mask = torch.where(causal & mask, bias, torch.finfo(bias.dtype).min)  # (N, H, P, P)
        if getattr(self.decoder, "reads_own_inputs", False):  # item vectors read each token's neighbour: whole rows
            hidden = self.decoder.input_embeddings(tokens).flatten(0, 1)[index]  # (T, d): real tokens only
        else:
            hidden = self.decoder.embed_tokens(tokens.flatten()[index])
        last = len(self.decoder.block) - 1
        for number, block in enumerate(self.decoder.block):
            self_layer, cross_layer, ff_layer = block.layer[0], block.layer[1], block.layer[-1]
            attention = self_layer.SelfAttention
            normed = _norm(self_layer.layer_norm, hidden)
            if number == last:
                keys_values = _unpack(_projections(normed, (attention.k, attention.v)), index, tokens.shape)
                self.context.append(tuple(self._heads(part).transpose(1, 2) for part in keys_values.chunk(2, -1)))
                return
            projected = _unpack(_projections(normed, (attention.q, attention.k, attention.v)), index, tokens.shape)
            query, key, value = (self._heads(part).transpose(1, 2) for part in projected.chunk(3, dim=-1))
            self.context.append((key, value))  # (N, H, P, D)
            attended = torch.nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=self_mask, scale=1.0
            )
            hidden = _clamp_fp16(hidden + attention.o(attended.transpose(1, 2).flatten(2).flatten(0, 1)[index]))

            attention = cross_layer.EncDecAttention
            query = _unpack(attention.q(_norm(cross_layer.layer_norm, hidden)), index, tokens.shape)
            keys, values = self.cross[number]
            weights = torch.softmax(self._heads(query).transpose(1, 2) @ keys + self.cross_mask, dim=-1)
            attended = (weights.to(values.dtype) @ values).transpose(1, 2)  # (N, P, H, D)
            hidden = _clamp_fp16(hidden + attention.o(attended.flatten(2).flatten(0, 1)[index]))
            hidden = _add_feed_forward(ff_layer, hidden)

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
        self.previous = pick(self.previous.unsqueeze(-1)).squeeze(-1)
        if self.sequence is not None:
            self.sequence = pick(self.sequence)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam (``tokens``: (N, B)); return the next-token logits (N, B, V) in float32."""
        position = self.context_length + len(self.cache[0])
        if getattr(self.decoder, "reads_own_inputs", False):
            hidden = self.decoder.input_embeddings(tokens, self.previous.expand_as(tokens))  # (N, B, d)
        else:
            hidden = self.decoder.embed_tokens(tokens)
        self.previous = tokens
        if self.sequence is not None:
            self.sequence = torch.cat([self.sequence.expand(*tokens.shape, -1), tokens.unsqueeze(-1)], dim=-1)
        bias = self.position_bias[0, :, position, : position + 1].T  # (P + T, H)
        context_bias, bias = bias[: self.context_length], bias[self.context_length :]
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
            if self.context:
                scores = torch.cat([self._context_scores(index, query, context_bias), scores], dim=2)
            weights = torch.softmax(scores, dim=2).unsqueeze(-1)
            attended = sum(weights[:, :, self.context_length + t] * value for t, (_, value) in enumerate(past))
            if self.context:
                context_weights = weights[:, :, : self.context_length, :, 0].permute(0, 3, 1, 2)  # (N, H, B, P)
                attended = attended + (context_weights @ self.context[index][1]).transpose(1, 2)
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
        if self.adjust_logits is not None:  # the model's forward adjusts its logits the same way: generate sees it
            logits = self.adjust_logits(logits, hidden, tokens, self.sequence)
        return logits

    def _context_scores(self, index: int, query: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Scores of the beams' queries (N, B, H, D) against layer ``index``'s context keys, position bias ``bias``
        (P, H) and padding mask added: (N, B, P, H), the layout of the step scores."""
        keys = self.context[index][0]  # (N, H, P, D)
        scores = query.transpose(1, 2) @ keys.transpose(-1, -2) + self.context_mask  # (N, H, B, P)
        return scores.permute(0, 2, 3, 1) + bias


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
class EncodedPrompts:
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


def encode(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """T5's encoder forward with the model's own modules, for the real tokens only: (T, d).

    Projections, layer norms and feed-forward blocks act on each token alone, so they run on the packed real tokens
    (padding is a quarter of a typical batch of prompts); only attention sees the padded (N, L) layout, with the
    attention mask (relative position bias, -inf at padding) built once for all layers, where transformers
    rebuilds it in every layer. Same kernels on the same values: the real tokens' states are identical.
    """
    n, length = input_ids.shape
    if hasattr(encoder, "input_embeddings"):  # the META ID encoder: F and the item input (which reads neighbours)
        hidden = encoder.input_embeddings(input_ids).flatten(0, 1)[index]
    else:
        hidden = encoder.embed_tokens(input_ids.flatten()[index])
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
