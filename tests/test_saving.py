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
from hf_metaid.saving import _check_augmentation_loaded, load_for_inference, save_for_inference
from hf_metaid.training import build_trainer, lora_config

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert torch.equal(logits_of(trainer.model, batch), logits_of(loaded, batch))
    row = split["test"][0]
    expected = trainer.model.recommend(tokenizer, user=row["user"], history=row["history"], k=5)
    assert loaded.recommend(loaded_tokenizer, user=row["user"], history=row["history"], k=5) == expected


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
    assert torch.equal(logits_of(loaded, batch), logits_of(trainer.model, batch))
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
    with pytest.raises(RuntimeError, match="differs"):
        _check_augmentation_loaded(loaded, folder, adapter)
