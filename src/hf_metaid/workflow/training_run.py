"""The training stage: prompts from the interaction rows in the model's format, then one Trainer run."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import datasets
from transformers import Seq2SeqTrainer

from ..data import (
    build_decoder_history_examples,
    build_training_prompts,
)
from ..entity_vocabulary import EntityVocabulary
from ..modeling_metaid import MetaIDForConditionalGeneration
from ..prompt_templates import TEMPLATES
from ..tokenization_metaid import MetaIDTokenizer
from ..training.trainer import build_trainer, training_arguments
from .build import build_model, build_tokenizer
from .settings import ModelSettings, TrainingSettings


@dataclass
class TrainingRun:
    """What :func:`train` returns: the trained model (a PEFT model with LoRA), its tokenizer, the Trainer (for
    :func:`~hf_metaid.save_for_inference`), the training seconds and the mean training loss."""

    model: object
    tokenizer: MetaIDTokenizer
    trainer: Seq2SeqTrainer
    seconds: float
    loss: float


def train(
    train_split: datasets.Dataset,
    vocabulary: EntityVocabulary,
    output_dir: str | os.PathLike,
    model_settings: ModelSettings = ModelSettings(),
    settings: TrainingSettings = TrainingSettings(),
    arguments: Mapping[str, object] | None = None,
    **trainer_kwargs,
) -> TrainingRun:
    """Tokenizer → model → prompts → Trainer run; checkpoints (if any) go under ``output_dir/checkpoints``.

    The prompt format (``model_settings``' templates, history length, history in the decoder) is recorded in the
    model's config, so evaluation and ``recommend`` ask in the words the model learned. ``arguments`` override the
    training arguments the settings give (:func:`~hf_metaid.training_arguments` keywords); ``trainer_kwargs`` go to
    :func:`~hf_metaid.build_trainer`.
    """
    model_settings.model_options()  # a bad templates file fails before the tokenizer is built
    tokenizer = build_tokenizer(vocabulary, model_settings.base)
    model = build_model(tokenizer, model_settings, seed=settings.seed)
    return fine_tune(model, tokenizer, train_split, output_dir, settings, arguments, **trainer_kwargs)


def fine_tune(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    train_split: datasets.Dataset,
    output_dir: str | os.PathLike,
    settings: TrainingSettings = TrainingSettings(),
    arguments: Mapping[str, object] | None = None,
    **trainer_kwargs,
) -> TrainingRun:
    """Train ``model`` (built by :func:`build_model`, or a saved one, e.g. after :func:`extend_model`) on
    ``train_split``: interaction rows (``user``, ``item``, ``position``), turned into prompts in the format the
    model's config records (templates, history length, history in the decoder); or prompts already built (columns
    ``source`` and ``target``), e.g. only those whose target is new. ``settings`` drive the run as in :func:`train`."""
    config = model.config
    templates = config.metaid_prompt_templates or TEMPLATES
    if {"source", "target"} <= set(train_split.column_names):
        prompts = train_split
    elif config.metaid_history_in_decoder:
        prompts = build_decoder_history_examples(
            train_split, tokenizer, templates=templates, max_history=config.metaid_max_history, seed=settings.seed
        )
    else:
        prompts = build_training_prompts(
            train_split,
            tokenizer,
            tasks=tuple(settings.tasks.split(",")),
            templates=templates,
            max_history=config.metaid_max_history,
            seed=settings.seed,
        )
    training = training_arguments(
        Path(output_dir) / "checkpoints",
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        save_strategy="no",
        logging_steps=max(1, settings.logging_steps),
        seed=settings.seed,
        disable_tqdm=False,
        bf16={"on": True, "off": False}.get(settings.bf16, settings.bf16),
        # Decoder sequences range from 1 to max_history items: batches of similar length waste little on padding.
        train_sampling_strategy="group_by_length" if config.metaid_history_in_decoder else "random",
        **(arguments or {}),
    )
    trainer = build_trainer(model, tokenizer, prompts, training, lora=True if settings.lora else None, **trainer_kwargs)
    started = time.perf_counter()
    result = trainer.train()
    return TrainingRun(trainer.model, tokenizer, trainer, time.perf_counter() - started, result.training_loss)
