"""The tokenizer, the model and the Auto classes: round trips, remote code, and the silent traps of transformers 5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from tokenizers import normalizers
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

import hf_metaid as hm
from conftest import random_vocabulary


def prompt(tok, user="u1", history=("i3", "i7")) -> str:
    items = " , ".join(tok.item_tokens(i) for i in history)
    return f"User {tok.user_tokens(user)} has interacted with items {items} . What is the next item ?"


def logits(model, tok, text):
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch, decoder_input_ids=torch.tensor([[0, tok.cluster_token_ids[1]]])).logits


# ------------------------------------------------------------------------------------------------- vocabulary
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


# -------------------------------------------------------------------------------------------------- tokenizer
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


# ------------------------------------------------------------------------------------------------------ model
def test_model_resizes_and_records_the_vocabulary(model, tokenizer, vocab):
    config = model.config
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert config.metaid_token_range == tokenizer.id_token_range
    assert config.metaid_vocab_fingerprint == vocab.fingerprint
    vectors = model.encoder.metaid_augmentation.vectors
    assert torch.equal(vectors, torch.from_numpy(vocab.token_vectors()))


def test_new_token_ids_come_from_the_tokenizer_not_the_embedding_rows(vocab):
    """T5 trap: t5-small has more embedding rows (32,128) than tokens (32,100)."""
    tok = hm.MetaIDTokenizer.from_base(None, vocab)
    big = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(vocab_size=len(tok) + 40), tok)
    assert big.config.metaid_first_new_id == tok.id_token_range.start
    assert big.get_input_embeddings().weight.shape[0] == len(tok) + 40


def test_augmentation_changes_only_id_token_embeddings(model, tokenizer):
    ids = torch.tensor([[5, *tokenizer.item_token_ids("i2"), 1]])
    extra = model.encoder.augmentation_for(ids)
    assert extra[0, 0].abs().sum() == 0 and extra[0, 3].abs().sum() == 0
    assert extra[0, 1].abs().sum() > 0 and extra[0, 2].abs().sum() > 0
    expected = 0.1 * model.encoder.metaid_augmentation()[ids[0, 1] - model.config.metaid_first_new_id]
    assert torch.allclose(extra[0, 1], expected)


def test_augmentation_reaches_forward_and_generate(model, tokenizer):
    text = prompt(tokenizer)
    batch = tokenizer([text], return_tensors="pt")
    before = logits(model, tokenizer, text)
    kwargs = {"max_new_tokens": 3, "do_sample": False, "output_scores": True, "return_dict_in_generate": True}
    generated = model.generate(**batch, **kwargs)
    with torch.no_grad():
        model.encoder.metaid_augmentation.weight.mul_(5.0)
    assert not torch.allclose(before, logits(model, tokenizer, text))
    again = model.generate(**batch, **kwargs)
    assert not torch.allclose(generated.scores[0], again.scores[0])


def test_research_code_flag_skips_the_augmentation_in_generate_only(model, tokenizer):
    batch = tokenizer([prompt(tokenizer)], return_tensors="pt")
    kwargs = {"max_new_tokens": 1, "do_sample": False, "output_scores": True, "return_dict_in_generate": True}
    fixed = model.generate(**batch, **kwargs).scores[0]
    model.config.metaid_augment_generation = False
    buggy = model.generate(**batch, **kwargs).scores[0]
    with model.encoder.augmentation_disabled():
        plain = model.generate(**batch, **kwargs).scores[0]
    assert torch.equal(buggy, plain) and not torch.allclose(buggy, fixed)
    assert model.encoder.augmentation_active  # training forward still uses F


def test_from_base_is_deterministic_and_centroid_init(tokenizer):
    a = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=1)
    b = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=1, init_new_rows="centroid")
    token_range = c.config.metaid_token_range
    rows = c.get_input_embeddings().weight[token_range.start : token_range.stop]
    old = c.get_input_embeddings().weight[: c.config.metaid_first_new_id]
    assert torch.allclose(rows.norm(dim=1), old.norm(dim=1).mean().expand(rows.shape[0]), atol=1e-4)
    with pytest.raises(ValueError, match="init_new_rows"):
        hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, init_new_rows="zeros")


def test_save_and_auto_load_give_identical_logits_and_recommendations(tmp_path, model, tokenizer):
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "metaid"
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(loaded) is hm.MetaIDForConditionalGeneration
    text = prompt(tokenizer)
    assert torch.equal(logits(loaded, loaded_tok, text), logits(model, tokenizer, text))
    assert loaded.recommend(loaded_tok, user="u1", history=["i3"], k=5) == model.recommend(
        tokenizer, user="u1", history=["i3"], k=5
    )


def test_mismatched_tokenizer_is_refused_with_both_fingerprints(model, tokenizer):
    other = hm.MetaIDTokenizer.from_base(None, random_vocabulary(seed=9))
    with pytest.raises(hm.VocabularyMismatchError) as err:
        model.check_tokenizer(other)
    assert model.config.metaid_vocab_fingerprint in str(err.value)
    assert other.entity_vocabulary.fingerprint in str(err.value)
    with pytest.raises(hm.VocabularyMismatchError):
        model.recommend(other, user="u1", k=3)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_metaid" or name.startswith("hf_metaid."):
                raise ImportError("hf_metaid is not installed here")

    sys.meta_path.insert(0, BlockPackage())
    sys.path = [p for p in sys.path if not p.endswith("src")]
    try:
        import hf_metaid  # noqa: F401
        raise SystemExit("hf_metaid is importable: the test would prove nothing")
    except ImportError:
        pass
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder, text = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, decoder_input_ids=torch.tensor([[0, tok.cluster_token_ids[1]]])).logits
    torch.save(out, folder + "/remote_logits.pt")
    print(json.dumps({"ids": batch["input_ids"][0].tolist(), "recs": model.recommend(tok, user="u1", k=4),
                      "module": type(model).__module__}))
    """
)


@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
def test_remote_code_load_without_the_package(tmp_path, model, tokenizer, tree_softmax):
    model.set_tree_softmax(tokenizer, tree_softmax)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSeq2SeqLM"] == "modeling_metaid.MetaIDForConditionalGeneration"
    for code in ("modeling_metaid.py", "decoding.py", "item_tree.py", "t5_fast_path.py", "tree_softmax.py"):
        assert (tmp_path / code).is_file()
    text = prompt(tokenizer)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(tmp_path), text], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads(result.stdout.strip().splitlines()[-1])
    assert remote["module"].startswith("transformers_modules")
    assert remote["ids"] == tokenizer([text])["input_ids"][0]
    # The subprocess may run with another thread count, which changes the order of float sums: items must agree
    # exactly, scores and logits to float32 rounding of values of order 1 (1e-5), never bit for bit.
    torch.testing.assert_close(
        torch.load(tmp_path / "remote_logits.pt"), logits(model, tokenizer, text), rtol=1e-5, atol=1e-5
    )
    local = model.recommend(tokenizer, user="u1", k=4)
    assert [item for item, _ in remote["recs"]] == [item for item, _ in local]
    assert [score for _, score in remote["recs"]] == pytest.approx([score for _, score in local], abs=1e-5)
