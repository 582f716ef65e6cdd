"""F on the decoder's ID tokens (``augment_decoder``): where the history is in the decoder, the paper's augmentation
reaches the items the model reads. Its arithmetic, every decoding path reading it alike, the research code's
generation flag, training and saving."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from conftest import with_item_vectors
from hf_metaid.decoding import decode_items
from ranking_checks import assert_same_ranking
from test_decoder_history import (
    assert_prefix_paths_agree,
    decode,
    decoder_pair,
    histories,
    prefixes,
    user_prompts,
)
from test_decoding import SHAPES

pytestmark = pytest.mark.numerics  # decoding paths and a reload compared: rerun under other CPU kernels


def augmented_pair(shape, items: bool = False):
    tokenizer, model = decoder_pair(shape, augment_decoder=True)
    with torch.no_grad():  # a larger F than the initial one, so that it moves the scores visibly
        model.encoder.metaid_augmentation.weight.mul_(20.0)
    if items:
        with_item_vectors(model, tokenizer, seed=shape[0], output=True, input=True)
    return tokenizer, model.eval()


def test_the_decoder_adds_alpha_f_at_id_tokens_only():
    tokenizer, model = augmented_pair(SHAPES[0])
    ids = torch.tensor(
        [[model.config.decoder_start_token_id, *tokenizer.item_token_ids(tokenizer.entity_vocabulary.items[0]), 1]]
    )
    extra = model.decoder.input_embeddings(ids) - model.decoder.embed_tokens(ids)
    expected = model.encoder.augmentation_for(ids)
    torch.testing.assert_close(extra, expected, rtol=0, atol=1e-6)
    assert extra[0, 0].abs().sum() == 0 and extra[0, 3].abs().sum() == 0 and extra[0, 1].abs().sum() > 0
    assert model.decoder.reads_own_inputs and model.decoder.augmentation_owner is model.encoder
    assert "decoder.metaid_augmentation.weight" not in model.state_dict()  # one F, saved once
    _, plain = decoder_pair(SHAPES[0])
    assert not plain.decoder.reads_own_inputs


@pytest.mark.parametrize("items", [False, True], ids=["alone", "with-item-vectors"])
@pytest.mark.parametrize("shape", SHAPES[:2], ids=lambda s: f"seed{s[0]}")
def test_every_decoding_path_reads_the_decoder_augmentation(shape, items):
    """``generate`` with the prefix = the fast path = the public forward; exact fast = exact generic; and F matters."""
    tokenizer, model = augmented_pair(shape, items)
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer, seed=shape[0]))
    tree = model.item_tree(tokenizer)
    fast = assert_prefix_paths_agree(model, tokenizer, batch, prefix)
    with model.encoder.augmentation_disabled():  # without F the same model scores otherwise
        assert not torch.allclose(decode(model, batch, tree, prefix, k=6, mode="exact")[1], fast[1])


def test_the_research_codes_flag_skips_the_decoders_f_in_generation_only():
    tokenizer, model = augmented_pair(SHAPES[1])
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer, seed=1))
    tree = model.item_tree(tokenizer)
    fixed = decode(model, batch, tree, prefix, k=5, mode="exact")[1]
    with model.encoder.augmentation_disabled():
        plain = decode(model, batch, tree, prefix, k=5, mode="exact")[1]
    model.config.metaid_augment_generation = False
    buggy = decode(model, batch, tree, prefix, k=5, mode="exact")[1]
    torch.testing.assert_close(buggy, plain, rtol=0, atol=1e-6)
    assert not torch.allclose(buggy, fixed)
    assert model.encoder.augmentation_active  # training forward still uses F


def test_training_reaches_f_through_the_decoder_alone():
    """An anonymous prompt has no ID token in the encoder: only the decoder's F gives F a gradient."""
    for augment, expect_gradient in ((True, True), (False, False)):
        tokenizer, model = decoder_pair(SHAPES[0], augment_decoder=augment)
        model.train()
        batch = tokenizer(["next item"] * 2, return_tensors="pt")
        items = tokenizer.entity_vocabulary.items
        labels = torch.tensor([tokenizer.item_token_ids(items[0]) + tokenizer.item_token_ids(items[1])] * 2)
        model(**batch, labels=labels).loss.backward()
        gradient = model.encoder.metaid_augmentation.weight.grad
        assert (gradient is not None and gradient.abs().sum() > 0) == expect_gradient


def test_a_saved_model_keeps_the_decoder_augmentation(tmp_path):
    tokenizer, model = augmented_pair(SHAPES[0])
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model").eval()
    assert loaded.config.metaid_augment_decoder and loaded.decoder.augmentation_owner is loaded.encoder
    batch = user_prompts(tokenizer)
    prefix = prefixes(tokenizer, histories(tokenizer))
    tree = model.item_tree(tokenizer)
    mine = decode(model, batch, tree, prefix, k=5, mode="exact")
    theirs = decode_items(
        loaded, batch["input_ids"], batch["attention_mask"], loaded.item_tree(tokenizer), k=5, mode="exact",
        decoder_prefix=prefix,
    )  # fmt: skip
    # float32 rounding: the reloaded weights sit at other memory alignments, which some BLAS kernels round otherwise
    assert_same_ranking(*mine, *theirs, atol=1e-5)
