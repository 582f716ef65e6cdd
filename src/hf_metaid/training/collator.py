"""Batches for META ID training: pad the model inputs, drop every other column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask")
LABEL_PAD = -100


@dataclass
class MetaIDDataCollator:
    """Pads ``input_ids`` (pad id), ``attention_mask`` (0) and ``labels`` (-100) and drops every other column.

    Dropping extra columns here (``user``, ``history``...) is what lets ``remove_unused_columns=False`` be safe,
    including for PEFT-wrapped models whose ``forward`` signature hides ``labels``. ``decoder_input_ids`` are left to
    the model, which shifts the labels itself (-100 becomes the pad id).
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = LABEL_PAD

    def __call__(self, features: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("empty batch")
        pads = {
            "input_ids": self.tokenizer.pad_token_id,
            "attention_mask": 0,
            "labels": self.label_pad_token_id,
            "decoder_input_ids": self.tokenizer.pad_token_id,
            "decoder_attention_mask": 0,
        }
        batch = {}
        for key in MODEL_INPUTS:
            if key not in features[0]:
                continue
            rows = [list(feature[key]) for feature in features]
            width = max(len(row) for row in rows)
            if self.pad_to_multiple_of:
                width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            left = key in ("input_ids", "attention_mask") and getattr(self.tokenizer, "padding_side", "") == "left"
            fill = pads[key]
            padded = [[fill] * (width - len(row)) + row if left else row + [fill] * (width - len(row)) for row in rows]
            batch[key] = torch.tensor(padded, dtype=torch.long)
        if "input_ids" not in batch:
            raise ValueError("features need 'input_ids' (tokenize the prompts with tokenize_prompts first)")
        return batch
