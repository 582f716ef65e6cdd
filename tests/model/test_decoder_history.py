"""The history in the decoder: decoding with a per-prompt decoder prefix against HF ``generate`` and brute force, the
tree softmax of the mode, the training examples, and ``recommend`` / saving / LoRA / remote code in the mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import hf_metaid as hm
from conftest import synthetic_interactions
from hf_metaid.decoding import decode_items
from hf_metaid.item_tree import trie_prefix_allowed_tokens_fn
from hf_metaid.prompt_templates import COMPACT_TEMPLATES, check_templates
from ranking_checks import assert_beam_cuts_clear, assert_same_ranking, assert_same_recommendations
from remote_code import REMOTE_RECOMMEND, run_remote
from test_auto_loading import REMOTE_SCRIPT
from test_decoding import SHAPES, make_pair, names, with_lora

PREFIX_LENGTHS = (3, 0, 1, 5, 2, 4)  # items per prompt: padded batches, one prompt without history


def decoder_pair(shape, **model_kwargs):
    tokenizer, model = make_pair(shape, **model_kwargs)
    model.set_prompt_format(COMPACT_TEMPLATES, max_history=8, history_in_decoder=True)
    if model.config.metaid_tree_softmax:
        model.set_tree_softmax(tokenizer)  # rebuild the cached table for the mode
    return tokenizer, model


def user_prompts(tokenizer, count=None):
    vocabulary = tokenizer.entity_vocabulary
    texts = [
        f"user {vocabulary.user_tokens(vocabulary.users[row % len(vocabulary.users)])}"
        for row in range(count or len(PREFIX_LENGTHS))
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def histories(tokenizer, lengths=PREFIX_LENGTHS, seed=0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    items = tokenizer.entity_vocabulary.items
    return [list(rng.choice(items, size=n, replace=False)) for n in lengths]


def prefixes(tokenizer, item_lists) -> list[list[int]]:
    return [[token for item in items for token in tokenizer.item_token_ids(item)] for items in item_lists]


def decode(model, batch, tree, prefix, **kwargs):
    return decode_items(model, batch["input_ids"], batch["attention_mask"], tree, decoder_prefix=prefix, **kwargs)


def assert_prefix_paths_agree(model, tokenizer, batch, prefix) -> tuple[torch.Tensor, torch.Tensor]:
    """``generate`` with the prefix = the fast path = the public forward (beam), exact fast = exact generic, up to
    ties; returns the exact mode's (items, scores)."""
    tree = model.item_tree(tokenizer)
    expected_items, expected_scores = generate_with_prefix(model, tokenizer, batch, prefix, 4)
    for fast_path in (True, False):
        items, scores = decode(model, batch, tree, prefix, k=4, fast_path=fast_path)
        assert_same_ranking(names(tree, items), scores, expected_items, expected_scores, atol=1e-4)
    fast = decode(model, batch, tree, prefix, k=6, mode="exact")
    generic = decode(model, batch, tree, prefix, k=6, mode="exact", fast_path=False)
    assert_same_ranking(*fast, *generic, atol=1e-4)
    return fast


def generate_with_prefix(model, tokenizer, batch, prefix, beams, exclude=None):
    """HF beam search, one prompt at a time: ``decoder_input_ids`` = start + prefix, a trie over the tokens after
    the prefix, two new tokens (the item ends after its rank token). Returns item lists and summed log-probs, after
    checking that no beam cut was near a tie (a fixture property)."""
    tree = model.item_tree(tokenizer)
    start = model.config.decoder_start_token_id
    all_items, all_scores = [], []
    for row, tokens in enumerate(prefix):
        decoder_input_ids = torch.tensor([[start, *tokens]])
        allowed = trie_prefix_allowed_tokens_fn(tree, start, None if exclude is None else [exclude[row]])
        offset = decoder_input_ids.shape[1]

        def after_prefix(batch_id, sent, offset=offset, allowed=allowed):
            return allowed(0, torch.cat([sent[:1], sent[offset:]]))

        generated = model.generate(
            input_ids=batch["input_ids"][row : row + 1],
            attention_mask=batch["attention_mask"][row : row + 1],
            decoder_input_ids=decoder_input_ids,
            num_beams=beams,
            num_return_sequences=beams,
            max_new_tokens=2,
            prefix_allowed_tokens_fn=after_prefix,
            length_penalty=0.0,  # sequences_scores = the sum of the two tokens' log-probabilities
            output_scores=True,
            return_dict_in_generate=True,
        )
        assert_beam_cuts_clear(generated.scores, beams)
        all_items.append(tokenizer.token_ids_to_items(generated.sequences[:, offset:]))
        all_scores.append(generated.sequences_scores)
    return all_items, torch.stack(all_scores)


# ------------------------------------------------------------------------------------ parity with HF generate
@pytest.mark.numerics
@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: f"seed{s[0]}")
def test_beam_mode_with_a_decoder_prefix_returns_what_generate_returns(shape, tree_softmax):
    """Prefixes of different lengths in one batch (left-padded inside the decoder) decode as generate decodes each
    prompt alone, fast path and public forward alike, with and without excluded items."""
    tokenizer, model = decoder_pair(shape, tree_softmax=tree_softmax)
    batch = user_prompts(tokenizer)
    item_lists = histories(tokenizer, seed=shape[0])
    prefix = prefixes(tokenizer, item_lists)
    tree = model.item_tree(tokenizer)
    numbers = [[tree.item_numbers[item] for item in items] for items in item_lists]
    for exclude in (None, numbers):
        expected_items, expected_scores = generate_with_prefix(model, tokenizer, batch, prefix, 4, exclude)
        for fast_path in (True, False):
            items, scores = decode(model, batch, tree, prefix, k=4, exclude=exclude, fast_path=fast_path)
            assert_same_ranking(names(tree, items), scores, expected_items, expected_scores, atol=1e-4)
    # the prefix matters: without it the lists differ
    plain, _ = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=4)
    assert not torch.equal(plain, items)


@pytest.mark.numerics
@pytest.mark.parametrize("shape", SHAPES[1:3], ids=lambda s: f"seed{s[0]}")
def test_exact_mode_with_a_decoder_prefix_equals_brute_force(shape):
    """Every item scored by plain forward passes over start + prefix + its cluster: log p(c) + log p(r | c)."""
    tokenizer, model = decoder_pair(shape)
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer, seed=shape[0]))
    vocabulary = tokenizer.entity_vocabulary
    clusters = torch.as_tensor(vocabulary.item_codes[:, 0]) + tokenizer.cluster_token_ids.start
    ranks = torch.as_tensor(vocabulary.item_codes[:, 1]) + tokenizer.rank_token_ids.start
    index = torch.arange(len(clusters))
    brute = []
    with torch.no_grad():
        for row, tokens in enumerate(prefix):
            start = torch.tensor([model.config.decoder_start_token_id, *tokens]).expand(len(clusters), -1)
            decoder_input_ids = torch.cat([start, clusters[:, None]], dim=1)
            inputs = {key: value[row : row + 1].expand(len(clusters), -1) for key, value in batch.items()}
            log_probs = model(**inputs, decoder_input_ids=decoder_input_ids).logits.log_softmax(-1)
            brute.append(log_probs[index, -2, clusters] + log_probs[index, -1, ranks])
    brute = torch.stack(brute)
    tree = model.item_tree(tokenizer)
    for fast_path in (True, False):
        # chunk_rows=8: several chunks, each padded to its own longest prefix
        items, scores = decode(model, batch, tree, prefix, k=6, mode="exact", fast_path=fast_path, chunk_rows=8)
        assert_same_ranking(items, scores, brute.topk(6).indices, brute.topk(6).values, atol=1e-4)


def test_decoder_prefix_rows_must_match_the_prompts():
    tokenizer, model = decoder_pair(SHAPES[0])
    batch = user_prompts(tokenizer, count=2)
    with pytest.raises(ValueError, match="decoder_prefix has 1 rows for 2 prompts"):
        decode(model, batch, model.item_tree(tokenizer), [[]])


@pytest.mark.numerics
def test_lora_model_decodes_a_prefix_as_generate_does():
    tokenizer, model = decoder_pair(SHAPES[2])
    adapted = with_lora(model)
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer))
    expected_items, expected_scores = generate_with_prefix(adapted, tokenizer, batch, prefix, 3)
    tree = model.item_tree(tokenizer)
    items, scores = decode(adapted, batch, tree, prefix, k=3)
    assert_same_ranking(names(tree, items), scores, expected_items, expected_scores, atol=1e-4)


# ------------------------------------------------------------------------------------------------ tree softmax
def test_tree_softmax_lets_a_rank_token_continue_with_the_next_item_in_this_mode():
    """Labels spanning several items are refused by the paper's tree (a rank token ends the item) and trained on
    with the history in the decoder, where the row after a rank token is the row after the start token."""
    tokenizer, model = make_pair(SHAPES[0], tree_softmax=True)
    batch = user_prompts(tokenizer, count=2)
    labels = torch.tensor(prefixes(tokenizer, histories(tokenizer, lengths=(3, 3))))
    with pytest.raises(ValueError, match="cannot follow the previous label"):
        model(**batch, labels=labels)
    model.set_prompt_format(COMPACT_TEMPLATES, max_history=8, history_in_decoder=True)
    output = model(**batch, labels=labels)
    assert torch.isfinite(output.loss)
    rank = tokenizer.rank_token_ids.start
    after = model.next_token_bias(torch.tensor([model.config.decoder_start_token_id, rank]), output.logits.shape[-1])
    assert torch.equal(after[0], after[1]) and torch.isinf(after[1, tokenizer.eos_token_id])


# ------------------------------------------------------------------------------------------- training examples
def test_decoder_history_examples_hold_every_training_item_once():
    interactions = synthetic_interactions(num_users=6, num_items=30)
    split = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(None, hm.MetaIDIndexer(num_clusters=3, dim=8).fit(split["train"], names))
    examples = hm.build_decoder_history_examples(split["train"], tokenizer, COMPACT_TEMPLATES, max_history=2)
    vocabulary = tokenizer.entity_vocabulary
    users = list(dict.fromkeys(split["train"]["user"]))
    rows = iter(examples)
    for user in users:
        items = [row["item"] for row in split["train"] if row["user"] == user]
        windows = [items[max(0, end - 2) : end] for end in range(len(items), 0, -2)]  # latest first
        for window in windows:
            row = next(rows)
            assert row["input_ids"] == tokenizer(f"user {vocabulary.user_tokens(user)}")["input_ids"]
            assert row["labels"] == [t for item in window for t in tokenizer.item_token_ids(item)]  # no end token
            assert row["length"] == len(row["labels"])
    assert next(rows, None) is None
    again = hm.build_decoder_history_examples(split["train"], tokenizer, COMPACT_TEMPLATES, max_history=2)
    assert again[:] == examples[:] and again._fingerprint == examples._fingerprint
    longer = hm.build_decoder_history_examples(split["train"], tokenizer, COMPACT_TEMPLATES, max_history=50)
    assert longer.num_rows == len(users) and longer._fingerprint != examples._fingerprint


# ---------------------------------------------------------------------------------- recommend, saving, loading
@pytest.mark.slow
@pytest.mark.numerics
def test_recommend_reads_the_history_in_the_decoder_and_survives_save_load(tmp_path):
    tokenizer, model = decoder_pair(SHAPES[1], tree_softmax=True)
    history = ["i3", "i7", "i11"]
    got = model.recommend(tokenizer, user="u1", history=history, k=5, exclude_seen=True)
    tree = model.item_tree(tokenizer)
    batch = tokenizer(["user " + tokenizer.user_tokens("u1")], return_tensors="pt")
    exclude = [[tree.item_numbers[i] for i in history]]
    items, scores = decode(model, batch, tree, prefixes(tokenizer, [history]), k=5, exclude=exclude)
    assert got == [(tree.items[i], s) for i, s in zip(items[0].tolist(), scores[0].tolist(), strict=True)]
    assert model.recommend(tokenizer, user="u1", history=history[-1:], k=5) != model.recommend(
        tokenizer, user="u1", history=history, k=5
    )
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.metaid_history_in_decoder and reloaded.config.metaid_max_history == 8
    # float32 rounding: the reloaded weights sit at other memory alignments, which some BLAS kernels round otherwise
    assert_same_recommendations(
        reloaded.recommend(tokenizer, user="u1", history=history, k=5, exclude_seen=True), got, atol=1e-5
    )

    script = REMOTE_SCRIPT.replace(
        'model.recommend(tok, user="u1", k=4)', 'model.recommend(tok, user="u1", history=["i3", "i7", "i11"], k=4)'
    )
    assert script != REMOTE_SCRIPT
    remote = run_remote(script, tmp_path, "user " + tokenizer.user_tokens("u1"))
    # another process, which may run with another thread count: the lists up to ties, the scores to 1e-5
    assert_same_recommendations(remote["recs"], model.recommend(tokenizer, user="u1", history=history, k=4), atol=1e-5)


def test_evaluation_asks_with_the_users_prompt_and_the_history_in_the_decoder():
    """evaluate_recommender gives the recommend_batch lists: the direct task's prompt, the history as the prefix."""
    interactions = synthetic_interactions(num_users=8, num_items=20)
    split = hm.leave_one_out(interactions)
    tokenizer = hm.MetaIDTokenizer.from_base(
        None, hm.MetaIDIndexer(num_clusters=3, dim=8).fit(split["train"], hm.catalogue(interactions))
    )
    torch.manual_seed(0)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer).eval()
    model.set_prompt_format(COMPACT_TEMPLATES, max_history=3, history_in_decoder=True)
    test = split["test"]
    metrics = hm.evaluate_recommender(model, tokenizer, test, ks=(10,), exclude_seen=True, progress=False)
    lists = model.recommend_batch(tokenizer, test["user"], test["history"], k=10, exclude_seen=True)
    ranks = [
        [item for item, _ in row].index(t) if t in [i for i, _ in row] else None
        for row, t in zip(lists, test["target"], strict=True)
    ]
    assert any(rank is not None for rank in ranks)  # the ranks below say something
    ndcg = np.mean([0.0 if rank is None else 1 / np.log2(rank + 2) for rank in ranks])
    assert metrics["ndcg@10"] == pytest.approx(ndcg)


ANONYMOUS = {"direct": {"seen": ["next item"]}, "sequential": {"seen": ["items {history}"]}}


def test_an_anonymous_prompt_asks_every_user_alike_and_the_history_decides():
    """A direct template without placeholders (the anonymous prompt) is accepted for the history in the decoder: the
    training examples and ``recommend`` then read no user ID, so two users with one history get one list."""
    tokenizer, model = decoder_pair(SHAPES[1])
    model.set_prompt_format(ANONYMOUS, max_history=8, history_in_decoder=True)
    users = tokenizer.entity_vocabulary.users
    history = ["i3", "i7", "i11"]
    first = model.recommend(tokenizer, user=users[0], history=history, k=5)
    assert model.recommend(tokenizer, user=users[1], history=history, k=5) == first
    assert model.recommend(tokenizer, user=users[0], history=history[:1], k=5) != first
    interactions = synthetic_interactions(num_users=6, num_items=20)
    examples = hm.build_decoder_history_examples(hm.leave_one_out(interactions)["train"], tokenizer, ANONYMOUS)
    assert len({tuple(row) for row in examples["input_ids"]}) == 1
    with pytest.raises(hm.InvalidArgumentError, match="lacks"):
        check_templates({"direct": {"seen": ["next {item}"]}})  # a placeholder other than {user} is a typo


@pytest.mark.slow
def test_a_vocabulary_without_user_ids_serves_the_anonymous_prompt_end_to_end(tmp_path):
    """IDs for items alone (``user_ids=False``): training examples, evaluation and ``recommend`` need no user ID with
    the anonymous prompt, the vocabulary is narrower, and a template that names the user is refused by name."""
    interactions = synthetic_interactions(num_users=10, num_items=24)
    split = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    both = hm.MetaIDIndexer(num_clusters=3, dim=8).fit(split["train"], names)
    items_only = hm.MetaIDIndexer(num_clusters=3, dim=8, user_ids=False).fit(split["train"], names)
    assert items_only.users == [] and len(items_only.new_tokens) < len(both.new_tokens)
    tokenizer = hm.MetaIDTokenizer.from_base(None, items_only)
    examples = hm.build_decoder_history_examples(split["train"], tokenizer, ANONYMOUS, max_history=4)
    assert len({tuple(row) for row in examples["input_ids"]}) == 1 and examples.num_rows >= len(names["users"])
    with pytest.raises(hm.InvalidArgumentError, match=r"names the user.*user_ids=False"):
        hm.build_decoder_history_examples(split["train"], tokenizer, COMPACT_TEMPLATES)
    with pytest.raises(hm.InvalidArgumentError, match="names the user"):
        hm.build_training_prompts(split["train"], tokenizer, tasks=("sequential",), templates=COMPACT_TEMPLATES)
    torch.manual_seed(0)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer).eval()
    model.set_prompt_format(ANONYMOUS, max_history=4, history_in_decoder=True)
    history = split["test"]["history"][0]
    got = model.recommend(tokenizer, user="any-user", history=history, k=5)  # the user is not needed, nor looked up
    assert got == model.recommend(tokenizer, user=None, history=history, k=5)
    assert len(got) == 5 and all(tokenizer.entity_vocabulary.has_item(item) for item, _ in got)
    with pytest.raises(hm.UnknownEntityError, match="recommend needs the user's history"):
        model.recommend(tokenizer, user="any-user", k=5)
    test = split["test"]
    metrics = hm.evaluate_recommender(model, tokenizer, test, ks=(5,), exclude_seen=True, progress=False)
    lists = model.recommend_batch(tokenizer, [None] * test.num_rows, test["history"], k=5, exclude_seen=True)
    hits = np.mean([t in [item for item, _ in row] for row, t in zip(lists, test["target"], strict=True)])
    assert metrics["hr@5"] == pytest.approx(hits) and metrics["known_users"] == 0
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded_tokenizer = hm.MetaIDTokenizer.from_pretrained(tmp_path)
    assert reloaded_tokenizer.entity_vocabulary.users == []
    assert reloaded_tokenizer.entity_vocabulary.fingerprint == items_only.fingerprint
    # the folder's own code, hf_metaid blocked: the user "u1", unknown to the vocabulary, is not looked up
    remote = run_remote(REMOTE_RECOMMEND, tmp_path, json.dumps(history))
    assert remote["module"].startswith("transformers_modules")
    assert_same_recommendations(remote["recs"], model.recommend(tokenizer, user=None, history=history, k=5), atol=1e-5)
