"""Decoding: ``decode_items`` against HF ``generate`` + trie and brute force, and the tree softmax both read."""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import hf_metaid as hm
from hf_metaid import t5_fast_path
from hf_metaid.decoding import _encoder_states, decode_items
from hf_metaid.item_tree import trie_prefix_allowed_tokens_fn
from hf_metaid.prompt_templates import SEQUENTIAL_SEEN, fill_template
from ranking_checks import assert_beam_cuts_clear, assert_same_ranking

# (seed, users, items, clusters, ranks per cluster, clusters reserved for users only)
SHAPES = [(0, 20, 40, 5, 20, 1), (1, 30, 25, 7, 12, 2), (2, 10, 60, 3, 40, 0), (3, 40, 30, 9, 10, 3)]


def make_vocabulary(seed, num_users, num_items, num_clusters, ranks, user_only=0) -> hm.EntityVocabulary:
    """Unique random codes; the last ``user_only`` clusters hold users and no item (a real META ID outcome)."""
    rng = np.random.default_rng(seed)
    shared = [(c, r) for c in range(num_clusters - user_only) for r in range(ranks)]
    reserved = [(c, r) for c in range(num_clusters - user_only, num_clusters) for r in range(ranks)]
    item_codes = np.array(shared)[rng.permutation(len(shared))[:num_items]]
    free = sorted(set(shared) - {tuple(c) for c in item_codes.tolist()}) + reserved
    user_codes = np.array(free)[rng.permutation(len(free))[:num_users]]
    return hm.EntityVocabulary(
        [f"u{i}" for i in range(num_users)],
        [f"i{i}" for i in range(num_items)],
        user_codes,
        item_codes,
        rng.standard_normal((num_clusters, 8)),
        seed=seed,
    )


def make_pair(shape, **model_kwargs):
    seed, *sizes = shape
    tokenizer = hm.MetaIDTokenizer.from_base(None, make_vocabulary(seed, *sizes))
    torch.manual_seed(seed)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, **model_kwargs)
    return tokenizer, model.eval()


def prompts(tokenizer, count=6, seed=0):
    """Sequential prompts of varied length (so the batch is padded)."""
    rng = np.random.default_rng(seed)
    vocabulary = tokenizer.entity_vocabulary
    texts = []
    for row in range(count):
        user = vocabulary.users[row % len(vocabulary.users)]
        history = rng.choice(vocabulary.items, size=1 + row % 5, replace=False)
        tokens = [vocabulary.item_tokens(item) for item in history]
        texts.append(fill_template(SEQUENTIAL_SEEN[0], tokenizer.user_tokens(user), tokens))
    return tokenizer(texts, return_tensors="pt", padding=True)


def hf_beam(model, tokenizer, batch, beams, exclude=None, **kwargs):
    tree = model.item_tree(tokenizer)
    return model.generate(
        **batch,
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=3,
        prefix_allowed_tokens_fn=trie_prefix_allowed_tokens_fn(tree, model.config.decoder_start_token_id, exclude),
        output_scores=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def names(tree, item_rows):
    return [[tree.items[i] if i >= 0 else None for i in row] for row in item_rows.tolist()]


def generated_items(tokenizer, generated, beams) -> tuple[list[list[str | None]], torch.Tensor]:
    """``generate``'s item lists, one row per prompt, and their summed log-probabilities (sequences_scores divides
    them by the 3 generated tokens), after checking that its beam cuts were not near ties (a fixture property)."""
    assert_beam_cuts_clear(generated.scores, beams)
    items = np.array(tokenizer.token_ids_to_items(generated.sequences), dtype=object).reshape(-1, beams).tolist()
    return items, generated.sequences_scores.view(-1, beams) * 3


def assert_beam_parity(model, tokenizer, batch, beams=5, exclude=None):
    """``decode_items`` in beam mode returns the lists and scores of ``generate`` + trie (with ``exclude``: one trie
    per prompt, its excluded items left out), up to ties; returns ``generate``'s output, the items and the scores."""
    tree = model.item_tree(tokenizer)
    generated = hf_beam(model, tokenizer, batch, beams=beams, exclude=exclude)
    items, scores = decode_items(
        model, batch["input_ids"], batch["attention_mask"], tree, k=beams, num_beams=beams, exclude=exclude
    )
    assert_same_ranking(names(tree, items), scores, *generated_items(tokenizer, generated, beams), atol=1e-4)
    return generated, items, scores


def assert_encoder_states_close(states, expected, model, batch):
    """``states`` (the real tokens' rows) are the model encoder's float32 ``expected`` to twice that encoder's own
    distance from float64: the packed rows go through other matrix shapes, which another CPU's kernels may add up in
    another order, and a random tiny encoder amplifies rounding (to about 1e-3 of states up to 4)."""
    with torch.no_grad():
        exact = copy.deepcopy(model).double().get_encoder()(**batch).last_hidden_state[batch["attention_mask"].bool()]
    rounding = (expected.double() - exact).abs().max().item()
    torch.testing.assert_close(states, expected, rtol=0, atol=2 * rounding)


def brute_force_scores(model, tokenizer, batch) -> torch.Tensor:
    """log p(cluster) + log p(rank | cluster) of every item, from plain full forward passes: (N, num_items)."""
    vocabulary = tokenizer.entity_vocabulary
    clusters = torch.as_tensor(vocabulary.item_codes[:, 0]) + tokenizer.cluster_token_ids.start
    ranks = torch.as_tensor(vocabulary.item_codes[:, 1]) + tokenizer.rank_token_ids.start
    start = torch.full_like(clusters, model.config.decoder_start_token_id)
    decoder_input_ids = torch.stack([start, clusters], dim=1)  # one row per item
    rows = []
    with torch.no_grad():
        for n in range(batch["input_ids"].shape[0]):
            repeat = {key: value[n : n + 1].expand(len(clusters), -1) for key, value in batch.items()}
            log_probs = model(**repeat, decoder_input_ids=decoder_input_ids).logits.log_softmax(-1)
            index = torch.arange(len(clusters))
            rows.append(log_probs[index, 0, clusters] + log_probs[index, 1, ranks])
    return torch.stack(rows)


# ------------------------------------------------------------------------------------ parity with HF generate
@pytest.mark.numerics
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"seed{s[0]}")
def test_beam_mode_returns_what_generate_with_a_trie_returns(shape):
    tokenizer, model = make_pair(shape)
    generated, _, _ = assert_beam_parity(model, tokenizer, prompts(tokenizer, seed=shape[0]))
    # every generated sequence is start, cluster, rank, end: 3 generated tokens
    assert generated.sequences.shape[1] == 4


@pytest.mark.numerics
@pytest.mark.parametrize(
    "config",
    [
        {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},  # T5 v1.1 / Flan-T5 layout
        {"num_layers": 3, "num_decoder_layers": 1, "relative_attention_num_buckets": 8},
    ],
    ids=["gated-untied", "asymmetric"],
)
def test_beam_parity_across_t5_variants(config):
    """The decoder reuses the model's own modules, so T5 variants decode as ``generate`` does."""
    tokenizer = hm.MetaIDTokenizer.from_base(None, make_vocabulary(*SHAPES[0]))
    torch.manual_seed(0)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(**config), tokenizer).eval()
    assert_beam_parity(model, tokenizer, prompts(tokenizer))


@pytest.mark.numerics
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize(
    "config",
    [{}, {"feed_forward_proj": "gated-gelu"}, {"num_layers": 3, "d_ff": 64}],
    ids=["relu", "gated", "deeper"],
)
def test_packed_encoder_gives_the_model_encoder_output(config, padding_side):
    """decode_items encodes only the real tokens (and builds the attention mask once); the states must be the
    model encoder's own, F included, whichever side the padding is on (to float32 rounding)."""
    tokenizer = hm.MetaIDTokenizer.from_base(None, make_vocabulary(*SHAPES[1]))
    torch.manual_seed(1)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(**config), tokenizer).eval()
    with torch.no_grad():
        model.encoder.metaid_augmentation.bias.normal_()  # F visibly non-zero
    tokenizer.padding_side = padding_side
    batch = prompts(tokenizer, count=7)
    assert not batch["attention_mask"].all()
    with torch.no_grad():
        expected = model.get_encoder()(**batch).last_hidden_state[batch["attention_mask"].bool()]
        encoded = _encoder_states(model, batch["input_ids"], batch["attention_mask"])
    assert_encoder_states_close(encoded.states, expected, model, batch)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_sequences_scores_divide_by_the_generated_length_with_end_token(length_penalty):
    """transformers 5 normalises a finished beam by (tokens generated, end token included) ** length_penalty:
    for META IDs always 3 ** length_penalty, so one ranking serves every penalty."""
    tokenizer, model = make_pair(SHAPES[0])
    batch = prompts(tokenizer)
    tree = model.item_tree(tokenizer)
    generated = hf_beam(model, tokenizer, batch, beams=4, length_penalty=length_penalty)
    _, scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=4)
    torch.testing.assert_close(generated.sequences_scores.view(-1, 4), scores / 3**length_penalty, rtol=1e-5, atol=1e-5)
    # the same sum, from HF's own per-step scores of the returned beams
    transition = model.compute_transition_scores(generated.sequences, generated.scores, generated.beam_indices)
    torch.testing.assert_close(transition.sum(-1).view(-1, 4), scores, rtol=1e-5, atol=1e-5)


@pytest.mark.numerics
def test_beam_parity_holds_without_augmentation_at_generation():
    """With the research code's flag, ``decode_items`` still decodes exactly what ``generate`` decodes."""
    tokenizer, model = make_pair(SHAPES[1], augment_generation=False)
    assert_beam_parity(model, tokenizer, prompts(tokenizer))


def with_lora(model):
    """``model`` with a LoRA adapter on every projection whose weights are not a no-op, in eval mode."""
    peft = pytest.importorskip("peft")
    adapted = peft.get_peft_model(
        model, peft.LoraConfig(r=4, target_modules=["q", "k", "v", "o", "wi", "wo"], task_type="SEQ_2_SEQ_LM")
    )
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:  # LoRA starts as a no-op; make it matter
            torch.nn.init.normal_(parameter, std=0.5)
    return adapted.eval()


@pytest.mark.numerics
def test_beam_parity_with_a_peft_adapter():
    tokenizer, model = make_pair(SHAPES[2])
    adapted = with_lora(model)
    batch = prompts(tokenizer)
    _, items, _ = assert_beam_parity(adapted, tokenizer, batch)
    with adapted.disable_adapter():
        plain, _ = decode_items(adapted, batch["input_ids"], batch["attention_mask"], model.item_tree(tokenizer), k=5)
    assert not torch.equal(items, plain)


# ------------------------------------------------------------------------------------------------- properties
@pytest.mark.numerics
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"seed{s[0]}")
def test_exact_mode_equals_brute_force_and_lists_are_valid(shape):
    tokenizer, model = make_pair(shape)
    batch = prompts(tokenizer, count=4, seed=shape[0] + 10)
    tree = model.item_tree(tokenizer)
    k = 7
    exact_items, exact_scores = decode_items(
        model, batch["input_ids"], batch["attention_mask"], tree, k=k, mode="exact"
    )
    brute = brute_force_scores(model, tokenizer, batch)
    brute_scores, brute_items = brute.topk(k, dim=-1)
    assert_same_ranking(exact_items, exact_scores, brute_items, brute_scores, atol=1e-4)
    # small chunks (several passes over the prompts) change nothing
    chunked = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=k, mode="exact", chunk_rows=5)
    assert_same_ranking(*chunked, exact_items, exact_scores, atol=1e-4)

    beam_items, beam_scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=k, num_beams=9)
    for items in (exact_items, beam_items):
        assert ((items >= 0) & (items < len(tree.items))).all()  # 0 invalid IDs
        assert all(len(set(row)) == len(row) for row in items.tolist())  # no duplicates
    for scores in (exact_scores, beam_scores):
        assert (scores[:, :-1] >= scores[:, 1:]).all()
    # beam scores add log p(end) <= 0 to log p(c) + log p(r | c), and exact mode has the best of the latter
    assert (exact_scores[:, 0] >= beam_scores[:, 0]).all()
    chosen = brute.gather(1, beam_items)
    assert (chosen >= beam_scores - 1e-4).all()
    assert (chosen <= exact_scores[:, :1] + 1e-4).all()


def plain_decoding(model, tokenizer, batch, k):
    """Beam mode without exclusion: (items, scores)."""
    return decode_items(model, batch["input_ids"], batch["attention_mask"], model.item_tree(tokenizer), k=k)


@pytest.mark.numerics
@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: f"seed{s[0]}")
def test_excluded_items_are_cut_from_each_prompts_tree_as_generate_does(shape):
    """Excluding items = HF beam search over a trie without them (per prompt), not a wider beam filtered."""
    tokenizer, model = make_pair(shape)
    batch = prompts(tokenizer, seed=shape[0])
    plain_items, plain_scores = plain_decoding(model, tokenizer, batch, k=5)
    # each prompt loses some of its own best items, and one prompt loses nothing
    exclude = [row[: 1 + n % 3] for n, row in enumerate(plain_items.tolist())]
    exclude[-1] = []
    _, items, scores = assert_beam_parity(model, tokenizer, batch, exclude=exclude)
    for row, left_out in zip(items.tolist(), exclude, strict=True):
        assert not set(row) & set(left_out)
    assert_same_ranking(items[-1], scores[-1], plain_items[-1], plain_scores[-1], atol=1e-4)
    # a beam wider than k: the first k of generate's beams
    tree = model.item_tree(tokenizer)
    expected, expected_scores = generated_items(
        tokenizer, hf_beam(model, tokenizer, batch, beams=7, exclude=exclude), 7
    )
    narrow = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=3, num_beams=7, exclude=exclude)
    assert_same_ranking(
        names(tree, narrow[0]), narrow[1], [row[:3] for row in expected], expected_scores[:, :3], atol=1e-4
    )
    # chunked passes over the prompts cut each prompt's own items
    for mode in ("beam", "exact"):
        whole = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode=mode, exclude=exclude)
        parts = decode_items(
            model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode=mode, exclude=exclude, chunk_rows=10
        )
        assert_same_ranking(*whole, *parts, atol=1e-4)


@pytest.mark.numerics
def test_fewer_items_left_than_beams():
    """generate repeats a beam at about -1e9 where the trie runs out of items; decode_items ends the list with -1
    and -inf. The items with a finite score are generate's."""
    tokenizer, model = make_pair(SHAPES[0])
    tree = model.item_tree(tokenizer)
    batch = prompts(tokenizer, count=2)
    kept = [3, 17, 30]
    exclude = [[item for item in range(len(tree.items)) if item not in kept], []]
    expected, expected_scores = generated_items(
        tokenizer, hf_beam(model, tokenizer, batch, beams=5, exclude=exclude), 5
    )
    items, scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=5, exclude=exclude)
    assert sorted(items[0, :3].tolist()) == kept and items[0, 3:].tolist() == [-1, -1]
    assert torch.isinf(scores[0, 3:]).all() and torch.isfinite(scores[0, :3]).all()
    assert_same_ranking(names(tree, items)[0][:3], scores[0, :3], expected[0][:3], expected_scores[0, :3], atol=1e-4)
    assert_same_ranking(names(tree, items)[1], scores[1], expected[1], expected_scores[1], atol=1e-4)
    with pytest.raises(ValueError, match=r"item number -1 is not in 0\.\.39"):
        decode_items(model, batch["input_ids"], batch["attention_mask"], tree, exclude=[[-1], []])


@pytest.mark.numerics
def test_exact_mode_excludes_items_and_keeps_the_others_order():
    tokenizer, model = make_pair(SHAPES[0])
    batch = prompts(tokenizer, count=3)
    tree = model.item_tree(tokenizer)
    brute = brute_force_scores(model, tokenizer, batch)
    exclude = [brute[row].topk(2 + row).indices.tolist() for row in range(3)]
    items, scores = decode_items(
        model, batch["input_ids"], batch["attention_mask"], tree, k=6, mode="exact", exclude=exclude
    )
    expected = brute.clone()
    for row, left_out in enumerate(exclude):
        expected[row, left_out] = float("-inf")
    assert_same_ranking(items, scores, expected.topk(6).indices, expected.topk(6).values, atol=1e-4)


@pytest.mark.numerics
def test_clusters_whose_items_are_all_excluded_are_not_opened():
    """The first prompt keeps only the items of its least likely cluster: no beam may be spent on the others, dead
    branches of its trie (were they opened, the beams would hold no item at all)."""
    tokenizer, model = make_pair(SHAPES[3])
    tree = model.item_tree(tokenizer)
    batch = prompts(tokenizer, count=2)
    start = torch.full((2, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        first = model(**batch, decoder_input_ids=start).logits[0, 0, tree.first_cluster_token :]
    kept = min(tree.clusters_with_items.tolist(), key=lambda cluster: float(first[cluster]))
    exclude = [[item for item in range(len(tree.items)) if tree.item_clusters[item] != kept], []]
    plain_items, plain_scores = plain_decoding(model, tokenizer, batch, k=4)
    for mode in ("beam", "exact"):
        items, scores = decode_items(
            model, batch["input_ids"], batch["attention_mask"], tree, k=4, mode=mode, exclude=exclude
        )
        assert (items >= 0).all()
        assert set(tree.item_clusters[items[0]].tolist()) == {kept}
        if mode == "beam":  # the prompt that excludes nothing is untouched
            assert_same_ranking(items[1], scores[1], plain_items[1], plain_scores[1], atol=1e-4)
    assert_beam_parity(model, tokenizer, batch, beams=4, exclude=exclude)
    everything = [list(range(len(tree.items)))] * 2  # nothing left to recommend: empty lists, not invented items
    for mode in ("beam", "exact"):
        items, scores = decode_items(
            model, batch["input_ids"], batch["attention_mask"], tree, k=4, mode=mode, exclude=everything
        )
        assert (items == -1).all() and torch.isinf(scores).all()
    with pytest.raises(ValueError, match="exclude has 1 rows for 2 prompts"):
        decode_items(model, batch["input_ids"], batch["attention_mask"], tree, exclude=[[]])


def test_clusters_without_items_are_never_chosen():
    tokenizer, model = make_pair(SHAPES[3])
    tree = model.item_tree(tokenizer)
    user_only = (~tree.cluster_has_items).nonzero().flatten()
    assert len(user_only) == 3
    with torch.no_grad():  # make the user-only clusters the most likely first tokens
        model.lm_head.weight[user_only + tree.first_cluster_token] *= 50
    batch = prompts(tokenizer)
    for mode in ("beam", "exact"):
        items, _ = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=8, mode=mode)
        assert (items >= 0).all()


def test_the_default_beam_width_is_the_models_own_where_it_is_above_k(monkeypatch):
    """config.metaid_num_beams (the width a recipe chose on validation) is what recommend and decode_items use unless
    asked: the lists equal an explicit num_beams of that width; a width under k gives k; an explicit one wins."""
    import hf_metaid.decoding as decoding

    tokenizer, model = make_pair(SHAPES[0])
    tree = model.item_tree(tokenizer)
    batch = prompts(tokenizer, count=3)
    widths = []
    chunk = decoding._decode_chunk
    monkeypatch.setattr(decoding, "_decode_chunk", lambda *args: widths.append(args[4]) or chunk(*args))
    model.config.metaid_num_beams = 8
    items, scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=3)
    wide, wide_scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=3, num_beams=8)
    assert widths == [8, 8] and torch.equal(items, wide) and torch.equal(scores, wide_scores)
    decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=3, num_beams=4)
    model.config.metaid_num_beams = 2
    decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=3)
    assert widths[2:] == [4, 3]
    model.config.metaid_num_beams = 8
    model.recommend(tokenizer, user="u1", k=3)
    model.recommend(tokenizer, user="u1", k=3, num_beams=5)
    assert widths[4:] == [8, 5]


def test_decode_items_rejects_bad_arguments(model, tokenizer):
    batch = prompts(tokenizer)
    tree = model.item_tree(tokenizer)
    with pytest.raises(ValueError, match="mode"):
        decode_items(model, batch["input_ids"], batch["attention_mask"], tree, mode="greedy")
    with pytest.raises(ValueError, match="num_beams"):
        decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=5, num_beams=3)


# ---------------------------------------------------------------------------------------------- tree softmax
def every_item_step(tokenizer, model):
    """Decoder inputs [start, cluster, rank] and labels [cluster, rank, end] of every item, one row each."""
    vocabulary = tokenizer.entity_vocabulary
    clusters = torch.as_tensor(vocabulary.item_codes[:, 0]) + tokenizer.cluster_token_ids.start
    ranks = torch.as_tensor(vocabulary.item_codes[:, 1]) + tokenizer.rank_token_ids.start
    start = torch.full_like(clusters, model.config.decoder_start_token_id)
    labels = torch.stack([clusters, ranks, torch.full_like(clusters, tokenizer.eos_token_id)], dim=1)
    return torch.stack([start, clusters, ranks], dim=1), labels


def one_prompt_per_item(tokenizer, count):
    batch = prompts(tokenizer, count=1)
    return {key: value.expand(count, -1) for key, value in batch.items()}


@pytest.mark.numerics
def test_tree_softmax_leaves_only_real_item_continuations():
    tokenizer, plain = make_pair(SHAPES[3])  # three clusters hold users only
    _, tree_model = make_pair(SHAPES[3], tree_softmax=True)
    decoder_input_ids, labels = every_item_step(tokenizer, plain)
    batch = one_prompt_per_item(tokenizer, len(labels))
    with torch.no_grad():
        restricted = tree_model(**batch, decoder_input_ids=decoder_input_ids).logits
        free = plain(**batch, decoder_input_ids=decoder_input_ids).logits
    allowed = torch.isfinite(restricted)
    tree = plain.item_tree(tokenizer)
    vocabulary = tokenizer.entity_vocabulary
    expected = torch.zeros_like(allowed)
    expected[:, 0, tree.clusters_with_items + tree.first_cluster_token] = True
    for row, (cluster, _) in enumerate(vocabulary.item_codes.tolist()):
        ranks_of_cluster = vocabulary.item_codes[vocabulary.item_codes[:, 0] == cluster, 1]
        expected[row, 1, torch.as_tensor(ranks_of_cluster) + tree.first_rank_token] = True
    expected[:, 2, tokenizer.eos_token_id] = True
    assert torch.equal(allowed, expected)
    assert torch.equal(restricted[allowed], free[allowed])  # the allowed logits are the model's own

    # the loss is the cross-entropy among the allowed tokens, computed here from the plain logits
    by_hand = -(free.masked_fill(~expected, float("-inf")).log_softmax(-1).gather(-1, labels[..., None])).mean()
    with torch.no_grad():
        loss = tree_model(**batch, labels=labels).loss
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)


def test_tree_softmax_refuses_labels_outside_the_tree():
    tokenizer, model = make_pair(SHAPES[0], tree_softmax=True)
    batch = prompts(tokenizer, count=2)
    cluster, rank = tokenizer.item_token_ids("i1")
    labels = torch.tensor([[cluster, rank, tokenizer.eos_token_id], [rank, cluster, tokenizer.eos_token_id]])
    with pytest.raises(ValueError, match=r"labels\[1, 0\] = token"):
        model(**batch, labels=labels)
    with pytest.raises(ValueError, match="need decoder_input_ids or labels"):
        model(**batch)


@pytest.mark.numerics
@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=["seed1", "seed3"])
def test_tree_softmax_decodes_as_generate_and_brute_force(shape):
    """The bias sits in the model's forward, so ``generate`` sees what ``decode_items`` adds in its own decoder."""
    tokenizer, model = make_pair(shape, tree_softmax=True)
    _, plain = make_pair(shape)
    batch = prompts(tokenizer, seed=shape[0])
    tree = model.item_tree(tokenizer)
    assert_beam_parity(model, tokenizer, batch)
    # generate without any trie stays inside the items: the model cannot spell anything else
    free = model.generate(**batch, num_beams=5, num_return_sequences=5, max_new_tokens=3)
    assert None not in tokenizer.token_ids_to_items(free)

    exact_items, exact_scores = decode_items(
        model, batch["input_ids"], batch["attention_mask"], tree, k=7, mode="exact"
    )
    brute_scores, brute_items = brute_force_scores(model, tokenizer, batch).topk(7, dim=-1)
    assert_same_ranking(exact_items, exact_scores, brute_items, brute_scores, atol=1e-4)
    # renormalised over real items: the probabilities of all items sum to one, unlike the plain softmax's
    every = brute_force_scores(model, tokenizer, batch).exp().sum(-1)
    torch.testing.assert_close(every, torch.ones_like(every), rtol=0, atol=1e-4)
    assert (brute_force_scores(plain, tokenizer, batch).exp().sum(-1) < 0.5).all()


@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
def test_forward_keeps_t5_parameters_for_generate_and_positional_calls(tree_softmax):
    """The forward override keeps T5's parameter list: ``generate`` checks its keyword arguments against it."""
    tokenizer, model = make_pair(SHAPES[0], tree_softmax=tree_softmax)
    batch = prompts(tokenizer)
    encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    from_states = model.generate(encoder_outputs=encoded, attention_mask=batch["attention_mask"], max_new_tokens=3)
    assert torch.equal(from_states, model.generate(**batch, max_new_tokens=3))
    start = torch.zeros(len(batch["input_ids"]), 1, dtype=torch.long)
    # the 4th positional parameter is decoder_attention_mask, as in T5 (not labels: no loss)
    assert model(batch["input_ids"], batch["attention_mask"], start, torch.ones_like(start)).loss is None
    as_tuple = model(**batch, decoder_input_ids=start, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], model(**batch, decoder_input_ids=start).logits)
    # T5's deprecated name for the cache still reaches it
    cache = model(**batch, decoder_input_ids=start, use_cache=True).past_key_values
    step = torch.full_like(start, tokenizer.cluster_token_ids[1])
    with pytest.warns(FutureWarning, match="past_key_values"):
        cached = model(**batch, decoder_input_ids=step, past_key_values=cache).logits
    full = model(**batch, decoder_input_ids=torch.cat([start, step], dim=1)).logits[:, -1:]
    torch.testing.assert_close(cached, full, rtol=0, atol=1e-5)


def test_tree_softmax_without_an_item_table_is_refused():
    tokenizer, model = make_pair(SHAPES[0], tree_softmax=True)
    empty = AutoModelForSeq2SeqLM.from_config(model.config)  # the option on, no table loaded
    batch = prompts(tokenizer)
    with pytest.raises(ValueError, match="item table is empty"):
        empty(**batch, decoder_input_ids=torch.zeros(len(batch["input_ids"]), 1, dtype=torch.long))


def test_tree_softmax_closes_a_cluster_without_items():
    tokenizer, model = make_pair(SHAPES[3], tree_softmax=True)  # its last three clusters hold users only
    tree = model.item_tree(tokenizer)
    user_only = (~tree.cluster_has_items).nonzero().flatten() + tree.first_cluster_token
    batch = one_prompt_per_item(tokenizer, len(user_only))
    decoder_input_ids = torch.stack([torch.zeros_like(user_only), user_only], dim=1)
    with torch.no_grad():
        allowed = torch.isfinite(model(**batch, decoder_input_ids=decoder_input_ids).logits[:, 1])
    assert allowed.sum(-1).tolist() == [1] * len(user_only)


# ---------------------------------------------------------------------------------- fast path and generic path
@pytest.mark.numerics
@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
@pytest.mark.parametrize("mode", ["beam", "exact"])
def test_generic_path_decodes_what_the_fast_path_decodes(mode, tree_softmax):
    """The public-forward path (forced) and the T5 fast path give the same lists, with and without exclusion. Scores
    agree to 1e-4: sums of log-probabilities of order 10 in float32, which the two paths add up in other orders."""
    tokenizer, model = make_pair(SHAPES[3], tree_softmax=tree_softmax)  # three clusters hold users only
    batch = prompts(tokenizer, seed=3)
    tree = model.item_tree(tokenizer)
    plain = plain_decoding(model, tokenizer, batch, k=5)[0].tolist()
    called = []  # the model's and the encoder's own forward: the generic path calls them, the fast path never does
    for module in (model, model.get_encoder()):
        module.register_forward_hook(lambda module, args, output: called.append(module))
    for exclude in (None, [row[: 1 + n % 3] for n, row in enumerate(plain)]):
        decode = functools.partial(
            decode_items, model, batch["input_ids"], batch["attention_mask"], tree, k=5, mode=mode, exclude=exclude
        )
        fast = decode()
        assert called == []
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a path asked for is not a failed check: no warning
            generic = decode(fast_path=False)
        assert model in called and model.get_encoder() in called
        called.clear()
        assert_same_ranking(*generic, *fast, atol=1e-4)


def rename_n_heads(model):
    """As if transformers renamed an attribute: ``n_heads`` of every decoder self-attention (which T5's own forward
    does not read there: the first layer computes the position bias, the others reuse it)."""
    for block in model.decoder.block:
        attention = block.layer[0].SelfAttention
        attention.num_heads = attention.n_heads
        del attention.n_heads


T5_CHANGES = {
    "eager-encoder": (
        lambda model: setattr(model.get_encoder().config, "_attn_implementation", "eager"),
        r"encoder\.config\._attn_implementation == 'sdpa' \(it is 'eager'\)",
    ),
    "renamed-attribute": (rename_n_heads, r"needs decoder\.block\[0\]\.layer\[0\]\.SelfAttention\.n_heads;"),
    "scaled-cross-attention": (  # the fast decoder, which takes T5's unscaled scores, would decode something else
        lambda model: setattr(model.decoder.block[1].layer[1].EncDecAttention, "scaling", 0.5),
        r"decoder\.block\[1\]\.layer\[1\]\.EncDecAttention\.scaling == 1\.0 \(it is 0\.5\)",
    ),
}


@pytest.mark.numerics
@pytest.mark.parametrize("change", T5_CHANGES)
def test_fast_path_checks_what_it_reads_and_falls_back_to_the_models_forward(change, monkeypatch):
    """A T5 unlike the one the fast path knows (as after a transformers upgrade) decodes through its own forward: one
    warning per model class names the missing piece, and the lists are still those of ``generate`` + trie."""
    monkeypatch.setattr(t5_fast_path, "_WARNED", set())  # another test may have warned about this class already
    tokenizer, model = make_pair(SHAPES[0])
    batch = prompts(tokenizer)
    alter, missing = T5_CHANGES[change]
    alter(model)
    with pytest.warns(UserWarning, match=missing) as caught:
        assert_beam_parity(model, tokenizer, batch)
        assert_beam_parity(model, tokenizer, batch, exclude=[[n] for n in range(len(batch["input_ids"]))])
    assert len([w for w in caught if "fast decoding path" in str(w.message)]) == 1


def lora(model):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(r=4, target_modules=["q", "k", "v", "o", "wi", "wo"], task_type="SEQ_2_SEQ_LM")
    return peft.get_peft_model(model, config)


@pytest.mark.parametrize(
    ("config", "wrap"),
    [
        ({}, None),
        ({"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}, None),
        ({"num_layers": 3, "num_decoder_layers": 1, "relative_attention_num_buckets": 8}, None),
        ({}, lora),
    ],
    ids=["relu", "gated-untied", "asymmetric", "lora"],
)
def test_fast_path_takes_t5_as_installed(config, wrap, monkeypatch):
    """The installed transformers' T5 passes every check, adapters or not; were one to fail after an upgrade, decoding
    would stay right but slow, and this test names the piece that moved. In training mode the encoder takes its own
    forward (dropout), without a warning: nothing is missing."""
    monkeypatch.setattr(t5_fast_path, "_WARNED", set())
    tokenizer = hm.MetaIDTokenizer.from_base(None, make_vocabulary(*SHAPES[0]))
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(**config), tokenizer).eval()
    model = wrap(model) if wrap else model
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert t5_fast_path.check_fast_path(model) == t5_fast_path.FastPath(encoder=True, decoder=True)
        model.train()
        assert t5_fast_path.check_fast_path(model) == t5_fast_path.FastPath(encoder=False, decoder=True)
