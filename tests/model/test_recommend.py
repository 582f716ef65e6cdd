"""``recommend`` / ``recommend_batch`` around the decoder, the research-code flag and the recorded prompt format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

import hf_metaid as hm
from hf_metaid.decoding import decode_items
from hf_metaid.prompt_templates import fill_template
from ranking_checks import assert_same_recommendations
from test_decoding import SHAPES, hf_beam, make_pair, make_vocabulary, prompts

pytestmark = pytest.mark.numerics  # lists from other batches, beams and reloads compared: rerun under other CPU kernels


# ------------------------------------------------------------------------------------------ recommend / batch
def test_exclude_seen_drops_history_and_still_returns_k(model, tokenizer):
    # The prompt shows the last history item only (max_history=1), so for any history ending in i0 it is the same
    # prompt, hence the same ranking.
    template = "user {user} items {history}"
    ask = {"k": 6, "template": template, "max_history": 1}
    top = [item for item, _ in model.recommend(tokenizer, user="u1", history=["i0"], **ask)]
    history = [*[item for item in top if item != "i0"][:3], "i0"]
    unfiltered = model.recommend(tokenizer, user="u1", history=history, **ask)
    assert [item for item, _ in unfiltered] == top
    kept = model.recommend(tokenizer, user="u1", history=history, exclude_seen=True, **ask)
    assert len(kept) == 6
    assert not {item for item, _ in kept} & set(history)
    # the history is cut from the tree before decoding: the same as decode_items told to exclude it
    tree = model.item_tree(tokenizer)
    prompt = template.format(user=tokenizer.user_tokens("u1"), history=tokenizer.item_tokens("i0"))
    batch = tokenizer([prompt], return_tensors="pt")
    numbers = [[tree.item_numbers[item] for item in history]]
    items, scores = decode_items(model, batch["input_ids"], batch["attention_mask"], tree, k=6, exclude=numbers)
    assert kept == [(tree.items[i], s) for i, s in zip(items[0].tolist(), scores[0].tolist(), strict=True)]


def test_recommend_batch_excludes_each_users_own_history_across_batches(model, tokenizer):
    users = ["u1", "u2", "u3", "u4", "u5"]
    histories = [["i0", "i1"], ["i2"], ["i3", "i4", "i5"], [], ["i1", "i6"]]
    whole = model.recommend_batch(tokenizer, users, histories, k=5, exclude_seen=True, batch_size=64)
    split = model.recommend_batch(tokenizer, users, histories, k=5, exclude_seen=True, batch_size=2)
    assert_same_recommendations(split, whole, atol=1e-4)  # other batches pad otherwise: equal up to rounding
    for row, history in zip(split, histories, strict=True):
        assert len(row) == 5 and not {item for item, _ in row} & set(history)
    # a beam narrower than k is widened to k, as before exclusion moved into the decoder
    narrow = model.recommend_batch(tokenizer, users, histories, k=5, exclude_seen=True, num_beams=3)
    assert_same_recommendations(narrow, whole, atol=1e-4)


def test_unknown_user_names_the_id(model, tokenizer):
    with pytest.raises(hm.UnknownEntityError, match="nobody-42"):
        model.recommend(tokenizer, user="nobody-42", history=["i1"], k=3)
    with pytest.raises(hm.UnknownEntityError, match="nobody-42"):
        model.recommend_batch(tokenizer, ["u1", "nobody-42"], k=3)


def test_cold_start_user_with_history(model, tokenizer):
    recommended = model.recommend(tokenizer, user=None, history=["i3", "i7"], k=5)
    assert len(recommended) == 5
    assert all(tokenizer.entity_vocabulary.has_item(item) for item, _ in recommended)
    with pytest.raises(ValueError):
        model.recommend(tokenizer, user=None, k=5)


def test_exact_mode_through_recommend_batch(model, tokenizer):
    users, histories = ["u1", "u2", "u3"], [["i3"], ["i1", "i2"], ["i9", "i8", "i7"]]
    exact = model.recommend_batch(tokenizer, users, histories, k=5, mode="exact")
    beam = model.recommend_batch(tokenizer, users, histories, k=5)
    assert [len(row) for row in exact] == [5, 5, 5]
    for exact_row, beam_row in zip(exact, beam, strict=True):
        assert len({item for item, _ in exact_row}) == 5
        assert exact_row[0][1] >= beam_row[0][1]  # no end token in exact scores, and no beam can beat it


@pytest.mark.parametrize("mode", ["beam", "exact"])
def test_k_larger_than_the_catalogue_returns_only_real_items(mode):
    tokenizer, model = make_pair((5, 12, 6, 4, 8, 1))
    recommended = model.recommend(tokenizer, user="u0", history=["i1"], k=20, mode=mode)
    items = [item for item, _ in recommended]
    assert sorted(items) == sorted(tokenizer.entity_vocabulary.items)
    assert all(np.isfinite(score) for _, score in recommended)


def test_tokenizer_of_another_vocabulary_is_refused(model, tokenizer):
    other = hm.MetaIDTokenizer.from_base(None, make_vocabulary(9, 30, 50, 4, 30))
    with pytest.raises(hm.VocabularyMismatchError) as caught:
        model.recommend(other, user="u1", k=3)
    message = str(caught.value)
    assert tokenizer.entity_vocabulary.fingerprint in message
    assert other.entity_vocabulary.fingerprint in message


# -------------------------------------------------------------------------------- research-code reproduction
def test_research_code_flag_changes_generation_but_not_training():
    tokenizer, model = make_pair(SHAPES[0])
    augmentation = model.encoder.metaid_augmentation
    assert augmentation.weight.abs().sum() > 0 and augmentation.vectors.abs().sum() > 0
    with torch.no_grad():
        augmentation.bias.normal_()
    batch = prompts(tokenizer)
    labels = torch.tensor([[*tokenizer.item_token_ids("i1"), tokenizer.eos_token_id]] * batch["input_ids"].shape[0])
    kwargs = {"output_hidden_states": True}

    fixed = hf_beam(model, tokenizer, batch, beams=4, **kwargs)
    fixed_loss = model(**batch, labels=labels).loss
    fixed_recs = model.recommend(tokenizer, user="u1", history=["i2"], k=4)
    model.config.metaid_augment_generation = False
    buggy = hf_beam(model, tokenizer, batch, beams=4, **kwargs)
    buggy_loss = model(**batch, labels=labels).loss
    buggy_recs = model.recommend(tokenizer, user="u1", history=["i2"], k=4)

    embeddings = model.shared(batch["input_ids"])
    assert torch.equal(buggy.encoder_hidden_states[0], embeddings)  # F skipped at generation
    torch.testing.assert_close(
        fixed.encoder_hidden_states[0], embeddings + model.encoder.augmentation_for(batch["input_ids"])
    )
    assert not torch.allclose(fixed.encoder_hidden_states[-1], buggy.encoder_hidden_states[-1])
    assert not torch.allclose(fixed.sequences_scores, buggy.sequences_scores)
    assert fixed_recs != buggy_recs
    # the training forward keeps F either way (that is the research code's train/inference mismatch)
    assert torch.equal(fixed_loss, buggy_loss)
    assert model.encoder.augmentation_active
    with torch.no_grad():
        augmentation.weight.zero_()
        augmentation.bias.zero_()
    assert not torch.allclose(model(**batch, labels=labels).loss, fixed_loss)


# ------------------------------------------------------------------------------------- recorded prompt format
def test_recorded_templates_drive_recommend_and_survive_save_load(model, tokenizer, tmp_path):
    custom = {"sequential": {"seen": ["user {user} items {history}"]}, "direct": {"seen": ["user {user}"]}}
    default = model.recommend(tokenizer, user="u1", history=["i3", "i7"], k=5)
    model.set_prompt_format(custom, max_history=1)
    assert model._prompt(tokenizer, "u1", ["i3", "i7"], None, 1) == fill_template(
        "user {user} items {history}", tokenizer.user_tokens("u1"), [tokenizer.item_tokens("i7")]
    )
    assert model._prompt(tokenizer, "u1", None, None, 1) == "user " + tokenizer.user_tokens("u1")
    recorded = model.recommend(tokenizer, user="u1", history=["i3", "i7"], k=5)
    explicit = model.recommend(tokenizer, user="u1", history=["i7"], k=5, template=custom["sequential"]["seen"][0])
    assert recorded == explicit and recorded != default
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.metaid_prompt_templates == custom and reloaded.config.metaid_max_history == 1
    # float32 rounding, not bit for bit: the reloaded weights sit at other memory alignments, which some BLAS kernels
    # (MKL's SSE4.2 path) round otherwise
    assert_same_recommendations(
        reloaded.recommend(tokenizer, user="u1", history=["i3", "i7"], k=5), recorded, atol=1e-5
    )


def test_recorded_templates_are_checked(model, tokenizer):
    with pytest.raises(ValueError, match="needs a non-empty 'seen' list"):
        model.set_prompt_format({"sequential": {"unseen": ["user {user}"]}})
    with pytest.raises(ValueError, match=r"lacks \{history\}, which a sequential prompt must show"):
        model.set_prompt_format({"sequential": {"seen": ["user {user} only"]}})
    with pytest.raises(ValueError, match="unknown task 'sequentail'"):  # a misspelt task would never be used
        model.set_prompt_format({"sequentail": {"seen": ["{history}"]}})
    with pytest.raises(ValueError, match="unknown kind 'unsen'"):
        model.set_prompt_format({"sequential": {"seen": ["{history}"], "unsen": ["{history}"]}})
    with pytest.raises(ValueError, match="max_history"):
        model.set_prompt_format(None, max_history=0)
    model.set_prompt_format({"sequential": {"seen": ["items {history}"]}})
    with pytest.raises(ValueError, match="no 'seen' templates for task 'direct'"):
        model.recommend(tokenizer, user="u1")  # the direct task, which the recorded templates lack


# ---------------------------------------------------------------------------- tree softmax, saved and reloaded
def test_tree_softmax_survives_auto_reload_and_can_be_switched_off(tmp_path):
    tokenizer, model = make_pair(SHAPES[2], tree_softmax=True)
    batch = prompts(tokenizer)
    expected = model.recommend(tokenizer, user="u1", history=["i3", "i7"], k=5)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.metaid_tree_softmax
    assert torch.equal(reloaded.metaid_item_mask, model.metaid_item_mask)
    assert_same_recommendations(
        reloaded.recommend(tokenizer, user="u1", history=["i3", "i7"], k=5), expected, atol=1e-5
    )

    decoder_input_ids = torch.zeros(batch["input_ids"].shape[0], 1, dtype=torch.long)
    reloaded.set_tree_softmax(tokenizer, enabled=False)
    _, plain = make_pair(SHAPES[2])
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded(**batch, decoder_input_ids=decoder_input_ids).logits,
            plain(**batch, decoder_input_ids=decoder_input_ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )
    assert "metaid_item_mask" not in reloaded.state_dict()
