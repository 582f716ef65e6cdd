"""Training META ID models with the Hugging Face ``Seq2SeqTrainer``, fully or with LoRA, and saving them for use.

The defaults here encode what is easy to get wrong with this model:

* no weight decay: the new ID-token rows (and PEFT's trainable-token rows, which are stored as absolute rows)
  would be pulled toward 0;
* LoRA trains the new rows of the *shared* table (one parameter for encoder, decoder and the tied ``lm_head``, the
  old rows stay bit-identical) and saves the augmentation F as a full module;
* the collator keeps only the model inputs, so the Trainer never has to guess columns from a ``forward`` signature;
* checkpoints keep optimizer, scheduler and RNG state, so ``trainer.train(resume_from_checkpoint=...)`` continues
  the run exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
)

from .data.prompts import tokenize_prompts
from .errors import VocabularyMismatchError
from .evaluation import evaluate_recommender
from .modeling_metaid import MetaIDForConditionalGeneration

AUGMENTATION_MODULE = "metaid_augmentation"
MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask")
ADAPTER_CONFIG = "adapter_config.json"
LABEL_PAD = -100


# ---------------------------------------------------------------------------------------------------- collator
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


# ------------------------------------------------------------------------------------------------- configuration
def lora_config(
    model: PreTrainedModel,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] = ("q", "v"),
    **overrides,
):
    """A ``peft.LoraConfig`` for a META ID T5: LoRA on ``target_modules``, the ID-token rows and F trained in full.

    ``trainable_token_indices={"shared": ids}`` trains only the new rows of the shared embedding (seen by encoder,
    decoder and the tied ``lm_head``); ``modules_to_save=["metaid_augmentation"]`` trains and saves F.
    """
    from peft import LoraConfig

    config = model.config
    if not getattr(config, "metaid_num_new_tokens", 0):
        raise ValueError("the model has no META ID tokens; build it with MetaIDForConditionalGeneration.from_base")
    fields = {
        "task_type": "SEQ_2_SEQ_LM",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": list(target_modules),
        "trainable_token_indices": {"shared": list(config.metaid_token_range)},
        "modules_to_save": [AUGMENTATION_MODULE],
    }
    fields.update(overrides)
    return LoraConfig(**fields)


def training_arguments(output_dir: str | os.PathLike, **overrides) -> Seq2SeqTrainingArguments:
    """``Seq2SeqTrainingArguments`` with the paper's recipe as defaults (AdamW, lr 1e-3, linear decay, warmup).

    Defaults that matter: ``weight_decay=0`` (decay pulls new rows to 0), ``remove_unused_columns=False`` (the
    collator selects the inputs), ``dataloader_pin_memory=False``, ``report_to="none"``, ``use_cpu`` when no GPU is
    visible, ``ddp_find_unused_parameters=False`` (every trainable parameter, F included, takes part in each step).
    Any keyword overrides them.
    """
    defaults = {
        "learning_rate": 1e-3,
        "optim": "adamw_torch",
        "weight_decay": 0.0,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0.05,
        "num_train_epochs": 10,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 64,
        "max_grad_norm": 1.0,
        "logging_steps": 50,
        "save_strategy": "epoch",
        "save_total_limit": 2,
        "eval_strategy": "no",
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "dataloader_pin_memory": False,
        "ddp_find_unused_parameters": False,
        "report_to": "none",
        "use_cpu": not torch.cuda.is_available(),
        "predict_with_generate": False,
        "seed": 0,
    }
    defaults.update(overrides)
    return Seq2SeqTrainingArguments(output_dir=str(output_dir), **defaults)


# ------------------------------------------------------------------------------------------------------ trainer
def build_trainer(
    model: PreTrainedModel,
    tokenizer,
    train_dataset: datasets.Dataset,
    args: Seq2SeqTrainingArguments,
    eval_dataset: datasets.Dataset | None = None,
    lora=None,
    max_source_length: int = 512,
    **trainer_kwargs,
) -> Seq2SeqTrainer:
    """A ``Seq2SeqTrainer`` for a META ID model, after checking that model and tokenizer share an ID vocabulary.

    Args:
        model: a :class:`MetaIDForConditionalGeneration` (or a PEFT model around one).
        train_dataset, eval_dataset: tokenized (``input_ids``/``labels``) or raw prompt datasets (``source``/
            ``target``), which are tokenized here with :func:`tokenize_prompts`.
        lora: ``None`` (full fine-tuning), ``True`` (:func:`lora_config` defaults) or a ``peft.LoraConfig``.
        trainer_kwargs: passed to ``Seq2SeqTrainer`` (callbacks, compute_metrics, ...).
    """
    base = _unwrap(model)
    if not hasattr(base, "check_tokenizer"):
        raise TypeError(f"expected a MetaIDForConditionalGeneration, got {type(base).__name__}")
    base.check_tokenizer(tokenizer)
    if lora is not None and lora is not False:
        if _is_peft(model):
            raise ValueError("the model is already a PEFT model; pass lora=None")
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model) if lora is True else lora)
    train_dataset = _tokenized(train_dataset, tokenizer, max_source_length)
    if args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
        train_dataset = _with_lengths(train_dataset, args.length_column_name)
    if eval_dataset is not None:
        eval_dataset = _tokenized(eval_dataset, tokenizer, max_source_length)
    trainer_kwargs.setdefault("data_collator", MetaIDDataCollator(tokenizer))
    return Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        **trainer_kwargs,
    )


def _tokenized(dataset: datasets.Dataset, tokenizer, max_source_length: int) -> datasets.Dataset:
    if "input_ids" in dataset.column_names:
        return dataset
    return tokenize_prompts(dataset, tokenizer, max_source_length=max_source_length)


def _with_lengths(dataset: datasets.Dataset, column: str) -> datasets.Dataset:
    """The prompt lengths that length-grouped sampling needs, as a column (the Trainer would otherwise read every
    row one by one); the collator drops it from the batches."""
    if column in dataset.column_names:
        return dataset
    return dataset.map(
        lambda batch: {column: [len(ids) for ids in batch["input_ids"]]}, batched=True, desc="Prompt lengths"
    )


def _is_peft(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _unwrap(model):
    """The plain transformers model under DDP / accelerate / PEFT wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if _is_peft(model):
        model = model.get_base_model()
    return model


# --------------------------------------------------------------------------------------- evaluation in training
class RecommendationEvalCallback(TrainerCallback):
    """Full-ranking HR/NDCG/MRR@k on a held-out split, logged by the Trainer like any other metric.

    Token-level ``compute_metrics`` cannot score a recommender (a hit needs decoding over every item), so this runs
    the paper's protocol (:func:`evaluate_recommender`) whenever the Trainer evaluates (``eval_strategy``), or at
    every epoch end with ``every_epoch=True``. Metrics appear as ``eval_hr@10`` etc. in ``trainer.state.log_history``.

    Args:
        tokenizer: the model's :class:`MetaIDTokenizer`.
        split: rows with ``user``, ``history``, ``target`` (``leave_one_out(...)["validation"]``).
        every_epoch: also evaluate at each epoch end, without an ``eval_dataset``.
        **protocol: options of :func:`evaluate_recommender` (``ks``, ``template``, ``limit``, ``mode`` ...).
    """

    def __init__(self, tokenizer, split: datasets.Dataset, every_epoch: bool = False, **protocol) -> None:
        self.tokenizer = tokenizer
        self.split = split
        self.every_epoch = every_epoch
        self.protocol = {"progress": False, **protocol}
        self.history: list[dict[str, float]] = []

    def _run(self, args, state, model) -> None:
        if not state.is_world_process_zero or model is None:
            return
        metrics = evaluate_recommender(_unwrap(model), self.tokenizer, self.split, **self.protocol)
        logged = {f"eval_{name}": value for name, value in metrics.items()}
        logged["epoch"] = state.epoch
        logged["step"] = state.global_step
        self.history.append(logged)
        state.log_history.append(logged)

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self._run(args, state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.every_epoch:
            self._run(args, state, model)


# ----------------------------------------------------------------------------------------------- save / load
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
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    if trainer is not None and not trainer.is_world_process_zero():
        return Path(output_dir)
    _unwrap(model).check_tokenizer(tokenizer)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if _is_peft(model):
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
        _unwrap(model).check_tokenizer(tokenizer)
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
    base.set_prompt_format(saved.metaid_prompt_templates, saved.metaid_max_history)
    if base.config.metaid_tree_softmax != saved.metaid_tree_softmax:
        base.set_tree_softmax(tokenizer, saved.metaid_tree_softmax)
    model = PeftModel.from_pretrained(base, folder, is_trainable=False)
    _check_augmentation_loaded(model, folder, adapter)
    model.eval()
    return model, tokenizer


def _rebuild_base(name: str, tokenizer, saved, **from_pretrained_kwargs) -> MetaIDForConditionalGeneration:
    """A saved META ID model loads as is; a plain T5 checkpoint gets the ID tokens and F first."""
    from transformers import AutoConfig

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
    wrapper = getattr(_unwrap(model).encoder, AUGMENTATION_MODULE)
    active = getattr(wrapper, "modules_to_save", None)
    if not saved or active is None:
        raise RuntimeError(
            f"{folder}: the augmentation F was not restored from the adapter (saved keys: {list(saved)})"
        )
    loaded = next(iter(active.values())).weight
    if not any(torch.equal(tensor.to(loaded), loaded) for tensor in saved.values()):
        raise RuntimeError(f"{folder}: the augmentation F in the adapter differs from the loaded one")
