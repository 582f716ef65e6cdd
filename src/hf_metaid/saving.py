"""Saving a trained META ID model into one folder that recommends, and loading it back.

A full model is a plain ``save_pretrained`` folder. A LoRA model is saved as its adapter (LoRA weights, the ID-token
rows, F) beside the base config and the tokenizer; loading rebuilds the base, checks it against the saved config and
makes sure F really came back, since PEFT drops saved modules it cannot place without a word.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, Seq2SeqTrainer

from .errors import VocabularyMismatchError
from .modeling_metaid import MetaIDForConditionalGeneration
from .peft_utils import AUGMENTATION_MODULE, is_peft, strip_parallel, unwrap

ADAPTER_CONFIG = "adapter_config.json"


def save_for_inference(trainer_or_model, tokenizer, output_dir: str | os.PathLike) -> Path:
    """Write everything needed to recommend into ONE folder.

    Full model: ``config.json`` + weights + tokenizer (loads with the Auto classes). LoRA model: the adapter
    (LoRA weights, the ID-token rows, F), the base model's ``config.json`` (so the base can be rebuilt and checked)
    and the tokenizer; reload with :func:`load_for_inference`.
    """
    trainer = trainer_or_model if isinstance(trainer_or_model, Seq2SeqTrainer) else None
    model = trainer_or_model.model if trainer is not None else trainer_or_model
    if trainer is not None:
        model = trainer.accelerator.unwrap_model(model)
    model = strip_parallel(model)
    if trainer is not None and not trainer.is_world_process_zero():
        return Path(output_dir)
    unwrap(model).check_tokenizer(tokenizer)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if is_peft(model):
        model.save_pretrained(output_dir)
        model.get_base_model().config.save_pretrained(output_dir)
    else:
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def load_for_inference(
    folder: str | os.PathLike, base=None, **from_pretrained_kwargs
) -> tuple[PreTrainedModel, object]:
    """``(model, tokenizer)`` from a folder written by :func:`save_for_inference`, in eval mode.

    Args:
        folder: the saved folder.
        base: LoRA folders only. ``None`` rebuilds the base from the adapter's ``base_model_name_or_path`` (a T5
            checkpoint such as ``"t5-small"`` or a saved META ID model); a string names another checkpoint; a
            model object is used as is (e.g. a base built from a configuration with the same seed, which has no
            checkpoint to reload). The base is resized to the tokenizer and checked against the saved config.
    """
    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not (folder / ADAPTER_CONFIG).is_file():
        if base is not None:
            raise ValueError(f"{folder} holds a full model; base= is only for LoRA adapters")
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, **from_pretrained_kwargs)
        unwrap(model).check_tokenizer(tokenizer)
        model.eval()
        return model, tokenizer

    from peft import PeftModel

    saved = MetaIDForConditionalGeneration.config_class.from_pretrained(folder)
    adapter = json.loads((folder / ADAPTER_CONFIG).read_text())
    if base is None:
        base = adapter.get("base_model_name_or_path") or None
        if base is None:
            raise ValueError(
                f"{folder}: the adapter was trained on a base built from a configuration (no checkpoint name); "
                "pass the same base model object as base="
            )
    if isinstance(base, (str, os.PathLike)):
        base = _rebuild_base(str(base), tokenizer, saved, **from_pretrained_kwargs)
    if not isinstance(base, MetaIDForConditionalGeneration):
        raise TypeError(f"base must be a checkpoint name/path or a MetaIDForConditionalGeneration, got {type(base)}")
    base.check_tokenizer(tokenizer)
    if base.get_input_embeddings().weight.shape[0] < len(tokenizer):
        base.resize_token_embeddings(len(tokenizer))
    for field in ("metaid_alpha", "metaid_first_new_id", "metaid_num_new_tokens", "d_model", "metaid_vector_dim"):
        if getattr(base.config, field) != getattr(saved, field):
            mine, theirs = getattr(base.config, field), getattr(saved, field)
            raise VocabularyMismatchError(f"base model {field}={mine!r} differs from the adapter's {theirs!r}")
    # The adapter was trained with the saved prompt format and output rule: recommend and evaluation must match.
    base.set_prompt_format(saved.metaid_prompt_templates, saved.metaid_max_history, saved.metaid_history_in_decoder)
    if base.config.metaid_tree_softmax != saved.metaid_tree_softmax:
        base.set_tree_softmax(tokenizer, saved.metaid_tree_softmax)
    model = PeftModel.from_pretrained(base, folder, is_trainable=False)
    _check_augmentation_loaded(model, folder, adapter)
    model.eval()
    return model, tokenizer


def _rebuild_base(name: str, tokenizer, saved, **from_pretrained_kwargs) -> MetaIDForConditionalGeneration:
    """A saved META ID model loads as is; a plain T5 checkpoint gets the ID tokens and F first."""
    config = AutoConfig.from_pretrained(name)
    if getattr(config, "model_type", None) == MetaIDForConditionalGeneration.config_class.model_type:
        return AutoModelForSeq2SeqLM.from_pretrained(name, **from_pretrained_kwargs)
    return MetaIDForConditionalGeneration.from_base(
        name,
        tokenizer,
        alpha=saved.metaid_alpha,
        augment_generation=saved.metaid_augment_generation,
        **from_pretrained_kwargs,
    )


def _check_augmentation_loaded(model, folder: Path, adapter: Mapping) -> None:
    """PEFT silently skips ``modules_to_save`` entries whose module is missing: make sure F really was loaded."""
    if AUGMENTATION_MODULE not in (adapter.get("modules_to_save") or []):
        return
    from safetensors.torch import load_file

    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file():
        return  # a .bin adapter: nothing cheap to compare against
    saved = {k: v for k, v in load_file(str(weights_file)).items() if AUGMENTATION_MODULE in k and k.endswith("weight")}
    wrapper = getattr(unwrap(model).encoder, AUGMENTATION_MODULE)
    active = getattr(wrapper, "modules_to_save", None)
    if not saved or active is None:
        raise RuntimeError(
            f"{folder}: the augmentation F was not restored from the adapter (saved keys: {list(saved)})"
        )
    loaded = next(iter(active.values())).weight
    if not any(torch.equal(tensor.to(loaded), loaded) for tensor in saved.values()):
        raise RuntimeError(f"{folder}: the augmentation F in the adapter differs from the loaded one")
