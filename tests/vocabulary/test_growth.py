"""A growing catalogue: EntityVocabulary.extend, the grown tokenizer and model, and a short fine-tune after them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

import hf_metaid as hm
from conftest import named_vocabulary, prompt, quiet_args, synthetic_interactions, with_item_vectors
from hf_metaid.data import build_training_prompts, tokenize_prompts
from hf_metaid.indexing.base import training_table_hash
from hf_metaid.vocabulary.growth import extend_tokenizer
from hf_metaid.workflow.growth import extend_model

# old scores kept through growth, a fine-tune's outcome: rerun under other CPU kernels
pytestmark = pytest.mark.numerics


def table(pairs) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"user": [u for u, _ in pairs], "item": [i for _, i in pairs]})


def hand_vocabulary(cold: bool = False) -> hm.EntityVocabulary:
    """Two clusters along the axes; users u0, u1 sit in cluster 0, u2 in cluster 1; items i0 (0), i1 (1)."""
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    user_codes, item_codes = [[0, 0], [0, 1], [1, 0]], [[0, 2], [1, 1]]
    clusters = [[1, 0, 0], [0, 1, 0]]
    metadata = {"cold_start": {"cluster": None}}
    if cold:  # the indexer's cold-start cluster: a zero vector, holding one cold item
        clusters.append([0, 0, 0])
        item_codes.append([2, 0])
        vectors = np.vstack([vectors, np.zeros((1, 3), np.float32)])
        metadata = {"cold_start": {"cluster": 2}}
    items = ["i0", "i1", "icold"][: len(item_codes)]
    return hm.EntityVocabulary(
        ["u0", "u1", "u2"], items, user_codes, item_codes, np.array(clusters), entity_vectors=vectors, metadata=metadata
    )


def test_new_entities_join_the_nearest_cluster_with_the_next_free_rank_and_old_ids_stay():
    parent = hand_vocabulary()
    before = json.dumps(parent.to_dict(), sort_keys=True)
    rows = table([("u0", "inew"), ("u1", "inew"), ("u2", "jnew"), ("u2", "jnew"), ("u2", "i0")])
    grown = parent.extend(rows, min_known_items=0)  # 1 of 3 items known: a batch of mostly new items
    assert json.dumps(parent.to_dict(), sort_keys=True) == before  # the parent is unchanged
    assert grown.items[: len(parent.items)] == parent.items and grown.users == parent.users
    assert np.array_equal(grown.item_codes[:2], parent.item_codes)
    assert np.array_equal(grown.user_codes, parent.user_codes)
    assert grown.item_code("inew") == (0, 3)  # neighbours u0, u1 lie in cluster 0, whose ranks 0..2 are taken
    assert grown.item_code("jnew") == (1, 2)  # u2 twice: cluster 1, ranks 0, 1 taken
    assert grown.num_ranks == 4 and np.array_equal(grown.rank_vectors[:3], parent.rank_vectors)
    assert grown.fingerprint != parent.fingerprint
    assert grown.metadata["parent_fingerprint"] == parent.fingerprint
    assert grown.metadata["lineage"] == [parent.fingerprint] and grown.descends_from(parent.fingerprint)
    assert grown.metadata["extension"]["items"] == 2 and grown.metadata["extension"]["new_rank_tokens"] == 1
    expected = (np.array([1, 0, 0]) + np.array([0.9, 0.1, 0])) / np.linalg.norm([1.9, 0.1, 0])
    np.testing.assert_allclose(grown.entity_vectors[len(grown.users) + 2], expected, rtol=1e-6)


def test_extension_is_deterministic_and_survives_save_and_load(tmp_path):
    parent = hand_vocabulary()
    rows = table([("unew", "i0"), ("unew", "i1"), ("unew", "knew"), ("u2", "knew")])
    first, second = parent.extend(rows), parent.extend(rows)  # 2 of 3 items known
    first.save(tmp_path / "a.json")
    second.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    loaded = hm.EntityVocabulary.load(tmp_path / "a.json")
    assert loaded.fingerprint == first.fingerprint and loaded.metadata["parent_fingerprint"] == parent.fingerprint
    # A vocabulary without entity vectors (a loaded file) folds in from its neighbours' cluster vectors instead.
    loaded = hm.EntityVocabulary.load(tmp_path / "a.json")
    assert loaded.extend(table([("u0", "z"), ("u1", "z")]), min_known_items=0).item_code("z")[0] == 0


def test_users_and_items_clustered_apart_stay_apart():
    parent = hand_vocabulary()
    parent.metadata["clusters"] = {"users": 1, "items": 1}  # as MetaIDIndexer(joint=False) records it
    grown = parent.extend(table([("u0", "inew"), ("u1", "inew"), ("unew", "i1"), ("unew", "i1")]))
    assert grown.item_code("inew")[0] == 1  # its users lie in cluster 0, a user cluster: the item cluster instead
    assert grown.user_code("unew")[0] == 0  # its item lies in cluster 1, an item cluster


def test_an_item_seen_only_by_new_users_is_placed_once_they_are():
    grown = hand_vocabulary().extend(table([("unew", "i1"), ("unew", "i1"), ("unew", "inew"), ("vnew", "inew")]))
    assert grown.user_code("unew")[0] == 1 and grown.item_code("inew")[0] == 1
    assert grown.metadata["extension"]["rounds"] == 2 and not grown.has_user("vnew")  # vnew: one row, no cold cluster
    assert grown.metadata["extension"]["left_out"] == {"users": 1, "items": 0}


def test_a_vocabulary_without_user_ids_places_new_items_through_their_users_and_gives_users_none():
    """Items only (``MetaIDIndexer(user_ids=False)``): a user's vector, folded in from its known items, carries the
    place to its new items, and the user itself gets no ID (nor counts as left out)."""
    parent = hand_vocabulary()
    items_only = hm.EntityVocabulary(
        [], parent.items, np.empty((0, 2)), parent.item_codes, parent.cluster_vectors,
        entity_vectors=parent.entity_vectors[len(parent.users) :], metadata=parent.metadata,
    )  # fmt: skip
    rows = table([("u0", "i1"), ("u0", "i1"), ("u0", "inew"), ("u9", "inew"), ("u9", "i1")])
    grown = items_only.extend(rows, min_known_items=0)
    assert grown.users == [] and grown.user_codes.shape == (0, 2)
    assert grown.item_code("inew") == (1, 2)  # its users' items lie in cluster 1, whose ranks 0..1 are taken
    assert grown.metadata["extension"]["rounds"] == 2  # the users first, then the item through them
    assert grown.metadata["extension"]["users"] == 0 and grown.metadata["extension"]["items"] == 1
    assert grown.metadata["extension"]["left_out"] == {"users": 0, "items": 0}


def test_too_few_interactions_follow_the_cold_start_rule():
    parent = hand_vocabulary(cold=True)
    grown = parent.extend(
        table([("u0", "once"), ("u0", "twice"), ("u1", "twice"), ("lonely", "icold")]),
        min_interactions=2,
        min_known_items=0,
    )
    assert grown.item_code("once") == (2, 2)  # the cold cluster's next free ranks, users before items
    assert grown.user_code("lonely") == (2, 1)  # its only neighbour is cold: no vector
    assert grown.item_code("twice")[0] == 0
    assert grown.metadata["extension"]["cold_start"] == 2


def test_data_whose_items_the_vocabulary_mostly_lacks_is_refused_unless_asked():
    """Under half of the new data's items known: other data than the vocabulary's (as evaluate refuses a split)."""
    parent = hand_vocabulary(cold=True)
    rows = table([("u0", "x1"), ("u1", "x2"), ("stranger", "x3"), ("stranger", "i0"), ("u2", "x1")])
    with pytest.raises(hm.UnknownDataError, match=r"knows 1 of the new data's 4 items \(25%\) and 3 of its 4 users"):
        parent.extend(rows)
    with pytest.raises(hm.UnknownDataError, match="min_known_items=0"):
        extend_model(None, SimpleNamespace(entity_vocabulary=parent), rows)  # refused before any growth
    grown = parent.extend(rows, min_known_items=0, source="new.csv")
    extension = grown.metadata["extension"]
    assert extension["data"] == {
        "name": "new.csv",
        "rows": 5,
        "rows_sha256": training_table_hash(rows),
        "users": 4,
        "known_users": 3,
        "items": 4,
        "known_items": 1,
    }
    # x1 and the stranger (two rows each) are placed by their neighbours; x2 and x3 (one row each) go cold
    assert (extension["cold_start_users"], extension["cold_start_items"]) == (0, 2)
    assert grown.metadata["extended_with"] == [{"name": "new.csv", "rows_sha256": extension["data"]["rows_sha256"]}]
    assert grown.metadata["cold_start"] == {"cluster": 2, "users": 0, "items": 3}  # icold and the two new ones
    assert parent.extend(table([("u0", "x1"), ("u1", "i0")])).has_item("x1")  # half known: the rule holds
    with pytest.raises(hm.InvalidArgumentError, match="min_known_items"):
        parent.extend(rows, min_known_items=1.5)


def test_bad_arguments_are_refused():
    with pytest.raises(hm.InvalidArgumentError, match="min_interactions"):
        hand_vocabulary().extend(table([("u0", "x")]), min_interactions=0)
    with pytest.raises(hm.InteractionFormatError, match="lacks column"):
        hand_vocabulary().extend(datasets.Dataset.from_dict({"user": ["u0"]}))


# ---------------------------------------------------------------------------------------------- tokenizer, model
@pytest.fixture
def grown_pair(tokenizer):
    vocabulary = tokenizer.entity_vocabulary
    rows = [(f"u{u}", "i_new") for u in range(12)] + [(f"u{u}", f"i_new{u % 3}") for u in range(30)]
    grown = vocabulary.extend(table(rows), min_known_items=0)  # new items only, bought by known users
    return grown, extend_tokenizer(tokenizer, grown)


def test_the_grown_tokenizer_keeps_every_token_id(tokenizer, grown_pair):
    grown, grown_tokenizer = grown_pair
    old = tokenizer.entity_vocabulary
    assert grown.num_ranks > old.num_ranks  # the fixture makes clusters outgrow the largest rank
    assert grown_tokenizer.convert_tokens_to_ids(old.new_tokens) == list(tokenizer.id_token_range)
    assert grown_tokenizer.id_token_range.start == tokenizer.id_token_range.start
    text = prompt(tokenizer)
    assert grown_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert grown_tokenizer.item_token_ids("i_new")[1] >= tokenizer.id_token_range.stop
    with pytest.raises(hm.VocabularyMismatchError, match="did not grow"):
        extend_tokenizer(grown_tokenizer, hand_vocabulary())


@pytest.mark.parametrize("tree", [False, True])
def test_extend_vocabulary_keeps_every_old_weight_and_moves_old_scores_by_the_new_share(tokenizer, grown_pair, tree):
    grown, grown_tokenizer = grown_pair
    # A table exactly as long as the tokenizer, so that the new tokens' rows are new rows.
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(vocab_size=len(tokenizer)), tokenizer).eval()
    if tree:
        model.set_tree_softmax(tokenizer)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    ids = tokenizer([prompt(tokenizer)], return_tensors="pt")
    decoder = torch.tensor([[0, tokenizer.cluster_token_ids[grown.item_code("i_new")[0]]]])  # a cluster that grows
    with torch.no_grad():
        old_logits = model(**ids, decoder_input_ids=decoder).logits.float()
    old_count = model.config.metaid_num_new_tokens
    model.extend_vocabulary(grown_tokenizer)
    after = model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(after[name][tuple(slice(0, size) for size in tensor.shape)], tensor), name
    assert model.shared.weight.shape[0] == len(grown_tokenizer) > len(tokenizer)
    start = tokenizer.id_token_range.start
    assert model.config.metaid_num_new_tokens == len(grown.new_tokens) > old_count
    assert model.config.metaid_vocab_fingerprint == grown.fingerprint
    rank_rows = model.shared.weight[start + grown.num_clusters : start + old_count]
    assert torch.equal(model.shared.weight[start + old_count], rank_rows.mean(dim=0))
    with torch.no_grad():
        new_logits = model(**ids, decoder_input_ids=decoder).logits.float()
    old_vocab = old_logits.shape[-1]
    known = torch.isfinite(old_logits)  # with the tree softmax, what the old items allowed
    torch.testing.assert_close(new_logits[..., :old_vocab][known], old_logits[known], rtol=1e-5, atol=1e-5)
    # log p_new = log p_old + log(1 - share of what only the new items use), for every old token at every step.
    fresh = torch.cat([~known, torch.ones_like(new_logits[..., old_vocab:], dtype=torch.bool)], dim=-1)
    share = (new_logits.softmax(-1) * fresh).sum(-1, keepdim=True).expand_as(old_logits)
    assert float(share.max()) > 0
    expected = old_logits.log_softmax(-1) + torch.log1p(-share)
    got = new_logits.log_softmax(-1)[..., :old_vocab]
    torch.testing.assert_close(got[known], expected[known], rtol=1e-4, atol=1e-4)
    model.recommend(grown_tokenizer, user="u1", history=["i3"], k=5)  # pairs with the grown tokenizer


def test_extend_vocabulary_refuses_a_foreign_vocabulary_and_lora(tokenizer, model, grown_pair):
    other = hm.MetaIDTokenizer.from_base(None, hand_vocabulary())
    with pytest.raises(hm.VocabularyMismatchError, match="did not grow"):
        model.extend_vocabulary(other)
    from peft import get_peft_model

    peft_model = get_peft_model(model, hm.lora_config(model))
    with pytest.raises(hm.InvalidArgumentError, match="merge_and_unload"):
        peft_model.extend_vocabulary(grown_pair[1])


def test_a_new_item_that_dominates_the_new_data_is_recommended_after_a_short_fine_tune(tmp_path, one_thread):
    old = synthetic_interactions(num_users=12, num_items=20)
    sequences = hm.user_sequences(old)
    names = hm.catalogue(old)
    tokenizer = hm.MetaIDTokenizer.from_base(None, named_vocabulary(names["users"], names["items"]))
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(dropout_rate=0.0), tokenizer, seed=0)
    users = sorted(sequences)
    # Asked with the history that comes before the new item in the new data: a short fine-tune learns that on every
    # CPU (with the last three items alone, 3 to 8 of the 12 users got it, as each CPU's kernels rounded training).
    histories = {user: sequences[user] for user in users}

    def top(model, tokenizer, k=5):
        model.eval()
        return [[item for item, _ in model.recommend(tokenizer, user=u, history=histories[u], k=k)] for u in users]

    assert not any("fresh" in items for items in top(model, tokenizer))  # unknown: never recommended
    grown = tokenizer.entity_vocabulary.extend(table([(u, "fresh") for u in users]), min_known_items=0)
    grown_tokenizer = extend_tokenizer(tokenizer, grown)
    model.extend_vocabulary(grown_tokenizer)
    # Every user's next item is the new one; their old sequences are replayed so the old items are not forgotten.
    rows = [(u, item) for u in users for item in [*sequences[u], "fresh"]]
    prompts = build_training_prompts(hm.load_interactions(table(rows)), grown_tokenizer, tasks=("sequential",))
    trainer = hm.build_trainer(
        model,
        grown_tokenizer,
        tokenize_prompts(prompts, grown_tokenizer),
        quiet_args(tmp_path, max_steps=60, learning_rate=1e-2, per_device_train_batch_size=16, seed=0),
    )
    trainer.train()
    hits = sum("fresh" in items for items in top(model, grown_tokenizer))
    assert hits >= len(users) // 2


def items_own_vectors(model, tokenizer) -> dict[str, tuple[torch.Tensor, ...]]:
    """Each item's item-output vector and bias and item-input vector (rows in (cluster, rank) order)."""
    vocabulary = tokenizer.entity_vocabulary
    order = sorted(range(len(vocabulary.items)), key=lambda n: tuple(vocabulary.item_codes[n]))
    output, encoder_input = model.metaid_item_output, model.get_encoder().metaid_item_input
    return {
        vocabulary.items[n]: (output.weight[row].clone(), output.bias[row].clone(), encoder_input.weight[row].clone())
        for row, n in enumerate(order)
    }


def test_extend_vocabulary_keeps_each_old_items_own_vectors(tokenizer, grown_pair):
    grown, grown_tokenizer = grown_pair
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(vocab_size=len(tokenizer)), tokenizer)
    with_item_vectors(model, tokenizer, input=True)
    before = items_own_vectors(model, tokenizer)
    model.extend_vocabulary(grown_tokenizer)
    after = items_own_vectors(model, grown_tokenizer)
    assert model.config.metaid_num_items == len(grown.items) > len(before)
    for item, vectors in before.items():
        assert all(torch.equal(old, new) for old, new in zip(vectors, after[item], strict=True)), item
    for item in set(after) - set(before):
        assert all(not vector.any() for vector in after[item]), item
    model.recommend(grown_tokenizer, user="u1", history=["i3"], k=5)
