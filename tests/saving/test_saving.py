"""Save/load round trips of full and LoRA models, reloading an adapter onto a base rebuilt from its checkpoint, and
the check that F really came back from an adapter."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

import hf_metaid as hm
from conftest import fixed_batch, logits_of, loss_of, quiet_args, tiny_model
from hf_metaid.prompt_templates import COMPACT_TEMPLATES, check_templates
from hf_metaid.saving.inference_folder import _check_augmentation_loaded, load_for_inference, save_for_inference
from hf_metaid.training.trainer import build_trainer, lora_config
from ranking_checks import assert_same_recommendations

datasets.disable_progress_bars()
# numerics: reloaded models score as the saved ones to float32 rounding, not bit for bit: their weights sit at other
# memory alignments, which some BLAS kernels (MKL's SSE4.2 path) round otherwise
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.numerics]


def test_full_finetune_learns_and_round_trips(tiny, tmp_path):
    split, tokenizer, train = tiny
    model = tiny_model(tokenizer)
    batch = fixed_batch(tokenizer, train)
    before = loss_of(model, batch)
    args = quiet_args(tmp_path / "run", max_steps=30, per_device_train_batch_size=16, learning_rate=3e-3)
    trainer = build_trainer(model, tokenizer, train, args)
    trainer.train()
    after = loss_of(trainer.model, batch)
    assert after < before - 1.0
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged[-1] < logged[0]

    folder = save_for_inference(trainer, tokenizer, tmp_path / "model")
    loaded, loaded_tokenizer = load_for_inference(folder)
    assert type(loaded).__name__ == "MetaIDForConditionalGeneration"
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)
    row = split["test"][0]
    expected = trainer.model.recommend(tokenizer, user=row["user"], history=row["history"], k=5)
    got = loaded.recommend(loaded_tokenizer, user=row["user"], history=row["history"], k=5)
    assert_same_recommendations(got, expected, atol=1e-5)


@pytest.mark.parametrize("tree_softmax", [False, True], ids=["plain", "tree"])
def test_lora_reload_from_saved_base_checkpoint(tiny, tmp_path, tree_softmax):
    """A base with a checkpoint path is rebuilt from the adapter config alone, and F is checked after loading.
    The prompt format and the tree softmax the adapter was trained with are set on the rebuilt base."""
    _, tokenizer, train = tiny
    tiny_model(tokenizer).save_pretrained(tmp_path / "base")
    base = hm.MetaIDForConditionalGeneration.from_pretrained(tmp_path / "base")
    base.set_prompt_format(COMPACT_TEMPLATES, max_history=4)  # the adapter's training words, not the base's
    base.set_tree_softmax(tokenizer, tree_softmax)
    args = quiet_args(tmp_path / "run", max_steps=3, per_device_train_batch_size=8)
    trainer = build_trainer(base, tokenizer, train, args, lora=lora_config(base, r=4))
    trainer.train()
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    batch = fixed_batch(tokenizer, train)
    loaded, _ = load_for_inference(folder)
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)
    assert loaded.get_base_model().config.metaid_prompt_templates == check_templates(COMPACT_TEMPLATES)
    assert loaded.get_base_model().config.metaid_max_history == 4
    assert loaded.get_base_model().config.metaid_tree_softmax == tree_softmax


def test_reload_checks_that_f_came_back_from_the_adapter(tiny, tmp_path):
    """PEFT leaves a module it cannot restore as initialised, without a word: the loaded F is compared with the
    saved one."""
    from peft import get_peft_model

    _, tokenizer, _ = tiny
    model = get_peft_model(tiny_model(tokenizer), lora_config(tiny_model(tokenizer)))
    with torch.no_grad():
        model.get_base_model().encoder.metaid_augmentation.modules_to_save["default"].weight.add_(1.0)
    folder = save_for_inference(model, tokenizer, tmp_path / "adapter")
    loaded, _ = load_for_inference(folder, base=tiny_model(tokenizer))
    restored = loaded.get_base_model().encoder.metaid_augmentation.modules_to_save["default"].weight
    assert torch.equal(restored, model.get_base_model().encoder.metaid_augmentation.modules_to_save["default"].weight)
    adapter = json.loads((folder / "adapter_config.json").read_text())
    with torch.no_grad():
        restored.copy_(tiny_model(tokenizer).encoder.metaid_augmentation.weight)  # as if the saved F were skipped
    with pytest.raises(hm.SavedFileError, match="differs"):
        _check_augmentation_loaded(loaded, folder, adapter)


def _trained_lora(tokenizer, train, tmp_path, base=None):
    """A 3-step LoRA run on ``base`` (default: the tiny T5 built from a configuration, seed 0)."""
    base = tiny_model(tokenizer) if base is None else base
    args = quiet_args(tmp_path / "run", max_steps=3, per_device_train_batch_size=8)
    trainer = build_trainer(base, tokenizer, train, args, lora=lora_config(base, r=4))
    trainer.train()
    return trainer


def _base_with_seed(tokenizer, seed):
    return hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=seed)


def test_lora_on_a_base_built_from_a_config_loads_without_base(tiny, tmp_path):
    """No checkpoint names such a base: its weights travel in base/, with their fingerprint, and the folder loads
    alone. A base rebuilt from the same configuration and seed is bit-identical, so it passes the check too."""
    _, tokenizer, train = tiny
    trainer = _trained_lora(tokenizer, train, tmp_path)
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    record = json.loads((folder / "metaid_base.json").read_text())
    assert record["folder"] == "base" and len(record["fingerprint"]) == 64 and "checkpoint" not in record
    assert (folder / "base" / "model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    batch = fixed_batch(tokenizer, train)
    loaded, _ = load_for_inference(folder)
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)
    rebuilt, _ = load_for_inference(folder, base=tiny_model(tokenizer))
    torch.testing.assert_close(logits_of(rebuilt, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)


def test_lora_refuses_another_base(tiny, tmp_path):
    """An adapter on another base would load and rank other items: the fingerprints differ and both are shown."""
    _, tokenizer, train = tiny
    folder = save_for_inference(_trained_lora(tokenizer, train, tmp_path), tokenizer, tmp_path / "adapter")
    recorded = json.loads((folder / "metaid_base.json").read_text())["fingerprint"]
    with pytest.raises(hm.BaseModelMismatchError, match=f"fingerprint {recorded}, but the base given as base=") as err:
        load_for_inference(folder, base=_base_with_seed(tokenizer, 1))
    assert err.value.args[0].count("fingerprint ") == 2
    _base_with_seed(tokenizer, 2).save_pretrained(folder / "base")  # the saved base swapped for another one
    with pytest.raises(hm.BaseModelMismatchError, match="the base saved in"):
        load_for_inference(folder)


def test_lora_refuses_a_changed_base_checkpoint(tiny, tmp_path):
    """A base loaded from a checkpoint is recorded by its path; if the checkpoint changes, loading is refused."""
    _, tokenizer, train = tiny
    tiny_model(tokenizer).save_pretrained(tmp_path / "base")
    base = hm.MetaIDForConditionalGeneration.from_pretrained(tmp_path / "base")
    folder = save_for_inference(_trained_lora(tokenizer, train, tmp_path, base), tokenizer, tmp_path / "adapter")
    record = json.loads((folder / "metaid_base.json").read_text())
    assert record["checkpoint"] == str((tmp_path / "base").resolve()) and "folder" not in record
    load_for_inference(folder)
    _base_with_seed(tokenizer, 3).save_pretrained(tmp_path / "base")
    with pytest.raises(hm.BaseModelMismatchError, match=f"the checkpoint {tmp_path / 'base'}"):
        load_for_inference(folder)


def test_adapter_saved_without_a_base_record_loads_with_a_warning(tiny, tmp_path):
    """Folders from before the base record load as they did, with base=, and say that the base is unchecked."""
    _, tokenizer, train = tiny
    folder = save_for_inference(_trained_lora(tokenizer, train, tmp_path), tokenizer, tmp_path / "adapter")
    (folder / "metaid_base.json").unlink()
    with pytest.raises(hm.SavedFileError, match="names no base model"):
        load_for_inference(folder)
    with pytest.warns(UserWarning, match="records no fingerprint of its base model"):
        load_for_inference(folder, base=tiny_model(tokenizer))


def test_lora_on_a_hub_base_records_its_name_and_revision(tiny, tmp_path, monkeypatch):
    """A base from the Hub is named with the commit it was loaded at, and rebuilt from that commit (here from a local
    cache laid out as the Hub's: no network)."""
    import huggingface_hub

    _, tokenizer, train = tiny
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    repo = cache / "models--org--base"
    tiny_model(tokenizer).save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # PEFT would ask the Hub for org/base
    base = hm.MetaIDForConditionalGeneration.from_pretrained(repo / "snapshots" / commit)
    base.config._name_or_path = "org/base"  # as from_pretrained("org/base") names it
    trainer = _trained_lora(tokenizer, train, tmp_path, base)
    folder = save_for_inference(trainer, tokenizer, tmp_path / "adapter")
    record = json.loads((folder / "metaid_base.json").read_text())
    assert (record["checkpoint"], record["revision"]) == ("org/base", commit)
    card = huggingface_hub.ModelCard.load(folder / "README.md")  # the card links the base on the Hub
    assert card.data.base_model == "org/base" and "[org/base](https://huggingface.co/org/base)" in card.text
    loaded, _ = load_for_inference(folder)
    batch = fixed_batch(tokenizer, train)
    torch.testing.assert_close(logits_of(loaded, batch), logits_of(trainer.model, batch), rtol=1e-5, atol=1e-5)
