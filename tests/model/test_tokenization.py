"""The ID vocabulary and MetaIDTokenizer: canonical files, round trips, ID tokens, and the silent traps of the
tokenizers of transformers 5."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tokenizers import normalizers
from transformers import AutoTokenizer

import hf_metaid as hm
from conftest import prompt, random_vocabulary


def test_vocabulary_file_is_canonical_and_round_trips(tmp_path, vocab):
    vocab.save(tmp_path / "a.json")
    again = hm.EntityVocabulary.load(tmp_path / "a.json")
    again.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert np.array_equal(again.token_vectors(), vocab.token_vectors())
    assert again.fingerprint == vocab.fingerprint
    random_vocabulary(seed=0).save(tmp_path / "c.json")
    assert (tmp_path / "c.json").read_bytes() == (tmp_path / "a.json").read_bytes()


def test_vocabulary_dataset_round_trip(tmp_path, vocab):
    vocab.entity_vectors = np.arange(len(vocab) * 3, dtype=np.float32).reshape(len(vocab), 3)
    table = vocab.to_dataset()
    assert table.num_rows == len(vocab) + len(vocab.new_tokens)
    row = table[0]
    assert row["type"] == "user" and row["tokens"] == vocab.user_tokens(row["id"])
    table.save_to_disk(str(tmp_path / "ds"))
    import datasets

    back = hm.EntityVocabulary.from_dataset(datasets.load_from_disk(str(tmp_path / "ds")))
    assert back.fingerprint == vocab.fingerprint
    assert np.array_equal(back.token_vectors(), vocab.token_vectors())
    assert np.array_equal(back.entity_vectors, vocab.entity_vectors)


def test_vocabulary_refuses_duplicate_ids_and_shared_codes():
    with pytest.raises(ValueError, match="same \\(cluster, rank\\)"):
        hm.EntityVocabulary(["u"], ["i"], [[0, 0]], [[0, 0]], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="duplicate item ids"):
        hm.EntityVocabulary([], ["i", "i"], np.zeros((0, 2)), [[0, 0], [0, 1]], np.zeros((1, 4)))


def test_corrupt_vocabulary_file_is_refused(tmp_path, vocab):
    vocab.save(tmp_path / "v.json")
    data = json.loads((tmp_path / "v.json").read_text())
    data["item_codes"][0], data["item_codes"][1] = data["item_codes"][1], data["item_codes"][0]
    (tmp_path / "v.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="fingerprint"):
        hm.EntityVocabulary.load(tmp_path / "v.json")


def test_id_tokens_are_single_tokens_and_decode_back(tokenizer, vocab):
    ids = tokenizer(tokenizer.item_tokens("i5"), add_special_tokens=False)["input_ids"]
    assert ids == tokenizer.item_token_ids("i5")
    assert len(tokenizer.id_token_range) == vocab.num_clusters + vocab.num_ranks
    assert tokenizer.token_ids_to_items([[0, *ids, 1], [0, 5, 1]]) == ["i5", None]
    assert tokenizer.token_ids_to_items(ids) == ["i5"]


def test_codes_read_back_through_the_vocabulary_and_the_old_tokenizer_name_still_works(tokenizer, vocab):
    assert vocab.item_at(*vocab.item_code("i5")) == "i5"
    assert vocab.item_at(*vocab.user_code("u3")) is None  # a user's code spells no item
    codes = vocab.item_for_code()
    assert codes[vocab.item_code("i7")] == "i7" and len(codes) == len(vocab.items)
    with pytest.raises(TypeError):  # the vocabulary's own map: read-only
        codes[(0, 0)] = "i0"
    sequences = [[0, *tokenizer.item_token_ids("i5"), 1], [0, 5, 1]]
    with pytest.warns(FutureWarning, match="renamed token_ids_to_items"):
        assert tokenizer.decode_items(sequences) == tokenizer.token_ids_to_items(sequences) == ["i5", None]


def test_unknown_ids_name_the_id(tokenizer):
    with pytest.raises(hm.UnknownEntityError, match="unknown item id 'nope'"):
        tokenizer.item_tokens("nope")
    with pytest.raises(hm.UnknownEntityError, match="unknown user id 'ghost'"):
        tokenizer.user_tokens("ghost")


def test_tokenizer_round_trip_keeps_ids_and_vocabulary(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "metaid_vocab.json").is_file()  # trap: an extra vocabulary file never written
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "MetaIDTokenizer"
    text = prompt(tokenizer)
    # trap: a subclass with __init__ rebuilt as a character-level BPE gives other ids without any error
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.tokenize("user has interacted") == ["user", "has", "interacted"]
    assert loaded.entity_vocabulary.fingerprint == tokenizer.entity_vocabulary.fingerprint
    assert loaded.id_token_range == tokenizer.id_token_range


def test_id_tokens_survive_a_lowercasing_normalizer(vocab):
    """Trap: ID tokens added as normalized tokens would be lowercased to <ct3> and become <unk>."""
    tok = hm.MetaIDTokenizer.from_base(None, vocab)
    assert isinstance(tok.backend_tokenizer.normalizer, normalizers.Sequence)  # the base lowercases
    encoded = tok(tok.item_tokens("i1"), add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in encoded and encoded == tok.item_token_ids("i1")


def test_from_base_accepts_a_loaded_base_tokenizer(vocab):
    """A plain fast base with extra special tokens (the shape of t5-small's): ID tokens go after all of them."""
    from transformers import PreTrainedTokenizerFast

    from hf_metaid.offline_base_tokenizer import build_offline_base_tokenizer

    base = PreTrainedTokenizerFast(
        tokenizer_object=build_offline_base_tokenizer(), pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    base.add_special_tokens({"additional_special_tokens": [f"<extra_id_{i}>" for i in range(3)]})
    tok = hm.MetaIDTokenizer.from_base(base, vocab)
    assert tok.id_token_range.start == len(base)
    assert tok.eos_token == "</s>" and tok.pad_token_id == 0
    assert tok("user", add_special_tokens=True)["input_ids"][-1] == tok.eos_token_id
    with pytest.raises(ValueError, match="already holds ID tokens"):
        hm.MetaIDTokenizer.from_base(tok, random_vocabulary(seed=3))


def test_missing_vocabulary_file_is_a_clear_error(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    os.remove(tmp_path / "metaid_vocab.json")
    with pytest.raises(ValueError, match=r"metaid_vocab\.json is missing"):
        AutoTokenizer.from_pretrained(tmp_path)
