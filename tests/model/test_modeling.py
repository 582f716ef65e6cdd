"""MetaIDForConditionalGeneration: resizing, the augmentation F inside the encoder, seeded construction, and the
pairing check with its tokenizer."""

from __future__ import annotations

import pytest
import torch

import hf_metaid as hm
from conftest import logits, prompt, random_vocabulary


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


def test_mismatched_tokenizer_is_refused_with_both_fingerprints(model, tokenizer):
    other = hm.MetaIDTokenizer.from_base(None, random_vocabulary(seed=9))
    with pytest.raises(hm.VocabularyMismatchError) as err:
        model.check_tokenizer(other)
    assert model.config.metaid_vocab_fingerprint in str(err.value)
    assert other.entity_vocabulary.fingerprint in str(err.value)
    with pytest.raises(hm.VocabularyMismatchError):
        model.recommend(other, user="u1", k=3)


def test_model_settings_carry_alpha_and_the_new_row_start_into_the_model(tokenizer):
    """The ablations' knobs (F's weight, the new rows' start) reach the model through the pipeline and the CLI."""
    from hf_metaid.cli import build_parser
    from hf_metaid.cli.settings_options import _model_and_training
    from hf_metaid.workflow.build import build_model
    from hf_metaid.workflow.settings import ModelSettings

    default = build_model(tokenizer, ModelSettings(d_model=32), seed=1)
    no_f = build_model(tokenizer, ModelSettings(d_model=32, alpha=0.0), seed=1)
    centroid = build_model(tokenizer, ModelSettings(d_model=32, init_new_rows="centroid"), seed=1)
    assert (default.config.metaid_alpha, no_f.config.metaid_alpha) == (0.1, 0.0)
    ids = torch.tensor([list(tokenizer.item_token_ids("i2"))])
    assert no_f.encoder.augmentation_for(ids).abs().sum() == 0 < default.encoder.augmentation_for(ids).abs().sum()
    rows = tokenizer.id_token_range
    weights = [m.get_input_embeddings().weight[rows.start : rows.stop] for m in (default, centroid)]
    assert not torch.allclose(*weights)
    assert torch.equal(
        default.get_input_embeddings().weight[: rows.start], centroid.get_input_embeddings().weight[: rows.start]
    )
    args = build_parser().parse_args(["demo", "--alpha", "0", "--init-new-rows", "centroid"])
    model, _ = _model_and_training(args)
    assert (model.alpha, model.init_new_rows) == (0.0, "centroid")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--init-new-rows", "zeros"])
