"""Seeing a META ID model through its wrappers (DDP, accelerate, PEFT), as training, saving and evaluation must."""

from __future__ import annotations

import torch

# The augmentation F inside the encoder: LoRA trains and saves it in full (``modules_to_save``), and a reload must
# find it there, since PEFT silently drops saved weights whose module is missing.
AUGMENTATION_MODULE = "metaid_augmentation"
# The item output (per-item output vectors at the rank step), where the model has one: trained and saved in full too.
ITEM_OUTPUT_MODULE = "metaid_item_output"
ITEM_INPUT_MODULE = "metaid_item_input"
REPEAT_BIAS_MODULE = "metaid_repeat_bias"
CHAIN_PRIOR_MODULE = "metaid_chain_prior"


def is_peft(model) -> bool:
    """Whether ``model`` is a ``peft.PeftModel``."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def strip_parallel(model):
    """The model under DDP / DataParallel wrappers (which keep it as ``.module``); a PEFT model stays one."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def unwrap(model):
    """The plain transformers model under DDP / accelerate / PEFT wrappers."""
    model = strip_parallel(model)
    if is_peft(model):
        model = model.get_base_model()
    return model
