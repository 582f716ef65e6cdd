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

Only torch is imported: the file travels with a saved model for ``trust_remote_code`` loading.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ItemTree:
    """The valid item IDs as dense tensors: the whole constraint, built once per vocabulary."""

    items: list[str]  # raw item ids, index = item number
    first_cluster_token: int
    first_rank_token: int
    eos_token_id: int
    item_of_code: torch.Tensor  # (num_clusters, num_ranks) item number or -1
    cluster_has_items: torch.Tensor  # (num_clusters,) bool

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

    def to(self, device: torch.device) -> ItemTree:
        self.item_of_code = self.item_of_code.to(device)
        self.cluster_has_items = self.cluster_has_items.to(device)
        return self

    def token_sequences(self) -> list[list[int]]:
        """Every item as its token ids ``[cluster, rank, eos]`` (for HF ``generate`` baselines and tests)."""
        codes = (self.item_of_code >= 0).nonzero().tolist()
        order = self.item_of_code[self.item_of_code >= 0].tolist()
        sequences: list[list[int]] = [[] for _ in self.items]
        for (cluster, rank), item in zip(codes, order, strict=True):
            sequences[item] = [self.first_cluster_token + cluster, self.first_rank_token + rank, self.eos_token_id]
        return sequences


def _next_token_log_probs(model, encoder_states, encoder_mask, decoder_ids, chunk_rows: int) -> torch.Tensor:
    """log-softmax over the full vocabulary of the next token after each ``decoder_ids`` row."""
    outputs = []
    for start in range(0, decoder_ids.shape[0], chunk_rows):
        stop = start + chunk_rows
        hidden = model.decoder(
            input_ids=decoder_ids[start:stop],
            encoder_hidden_states=encoder_states[start:stop],
            encoder_attention_mask=encoder_mask[start:stop],
            use_cache=False,
        ).last_hidden_state[:, -1]
        if model.config.scale_decoder_outputs:
            hidden = hidden * (model.config.d_model**-0.5)
        outputs.append(torch.log_softmax(model.lm_head(hidden).float(), dim=-1))
    return torch.cat(outputs)


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items per prompt: ``(item numbers (N, k), scores (N, k))``, best first; -1 where fewer exist.

    Args:
        model: a (possibly PEFT-wrapped) ``MetaIDForConditionalGeneration``.
        input_ids, attention_mask: the tokenized prompts, shape ``(N, L)``.
        tree: the valid items (:class:`ItemTree`).
        k: how many items to return per prompt.
        num_beams: beam width of ``beam`` mode (defaults to ``k``, as in the paper's protocol); must be ≥ k.
        mode: ``"beam"`` or ``"exact"`` (see the module docstring).
        chunk_rows: decoder rows per forward pass (bounds memory in ``exact`` mode).
    """
    if mode not in ("beam", "exact"):
        raise ValueError(f"mode must be 'beam' or 'exact', got {mode!r}")
    num_beams = num_beams or k
    if mode == "beam" and num_beams < k:
        raise ValueError(f"num_beams ({num_beams}) must be at least k ({k})")
    device = input_ids.device
    tree = tree.to(device)
    n = input_ids.shape[0]
    encoder_states = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    start = torch.full((n, 1), model.config.decoder_start_token_id, dtype=torch.long, device=device)
    cluster_slice = slice(tree.first_cluster_token, tree.first_cluster_token + tree.num_clusters)
    rank_slice = slice(tree.first_rank_token, tree.first_rank_token + tree.num_ranks)

    # Level 1: every cluster scored in one decoder step.
    cluster_scores = _next_token_log_probs(model, encoder_states, attention_mask, start, chunk_rows)[:, cluster_slice]
    cluster_scores = cluster_scores.masked_fill(~tree.cluster_has_items, float("-inf"))
    width = min(num_beams, tree.num_clusters) if mode == "beam" else tree.num_clusters
    top_cluster_scores, top_clusters = cluster_scores.topk(width, dim=-1)  # (N, W)

    # Level 2: the chosen clusters expanded in one batched step.
    repeat = torch.arange(n, device=device).repeat_interleave(width)
    prefix = torch.cat([start[repeat], (top_clusters.reshape(-1, 1) + tree.first_cluster_token)], dim=1)
    rank_scores = _next_token_log_probs(model, encoder_states[repeat], attention_mask[repeat], prefix, chunk_rows)
    rank_scores = rank_scores[:, rank_slice].reshape(n, width, tree.num_ranks)
    valid = tree.item_of_code[top_clusters] >= 0  # (N, W, R)
    totals = (top_cluster_scores.unsqueeze(-1) + rank_scores).masked_fill(~valid, float("-inf"))
    keep = min(num_beams if mode == "beam" else k, totals[0].numel())
    best_scores, flat = totals.reshape(n, -1).topk(keep, dim=-1)  # (N, keep)
    best_clusters = top_clusters.gather(1, flat // tree.num_ranks)
    best_ranks = flat % tree.num_ranks

    if mode == "beam":
        # Level 3: the end token closes every beam; its log-probability is part of HF's beam score.
        repeat = torch.arange(n, device=device).repeat_interleave(keep)
        closed = torch.cat(
            [
                start[repeat],
                best_clusters.reshape(-1, 1) + tree.first_cluster_token,
                best_ranks.reshape(-1, 1) + tree.first_rank_token,
            ],
            dim=1,
        )
        end_scores = _next_token_log_probs(model, encoder_states[repeat], attention_mask[repeat], closed, chunk_rows)
        best_scores = best_scores + end_scores[:, tree.eos_token_id].reshape(n, keep)
        best_scores, order = best_scores.topk(min(k, keep), dim=-1)
        best_clusters, best_ranks = best_clusters.gather(1, order), best_ranks.gather(1, order)

    items = tree.item_of_code[best_clusters, best_ranks]
    items = items.masked_fill(torch.isinf(best_scores), -1)
    return _pad(items, k, -1), _pad(best_scores, k, float("-inf"))


def _pad(values: torch.Tensor, k: int, fill) -> torch.Tensor:
    if values.shape[1] >= k:
        return values[:, :k]
    extra = torch.full((values.shape[0], k - values.shape[1]), fill, dtype=values.dtype, device=values.device)
    return torch.cat([values, extra], dim=1)


def trie_prefix_allowed_tokens_fn(tree: ItemTree, decoder_start_token_id: int):
    """The classic constraint (a dict trie called per beam per step), for HF ``generate``: the reference that
    :func:`decode_items` is measured and tested against."""
    trie: dict[tuple[int, ...], list[int]] = {}
    for sequence in tree.token_sequences():
        if not sequence:
            continue
        for depth in range(len(sequence)):
            trie.setdefault(tuple(sequence[:depth]), []).append(sequence[depth])
    trie = {prefix: sorted(set(tokens)) for prefix, tokens in trie.items()}

    def allowed(batch_id: int, sent: torch.Tensor) -> list[int]:
        prefix = tuple(sent.tolist()[1:])  # drop the decoder start token
        return trie.get(prefix, [tree.eos_token_id])

    return allowed
