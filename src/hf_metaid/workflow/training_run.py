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
from ..data.prompts import training_sequences
from ..entity_vocabulary import EntityVocabulary
from ..errors import InvalidArgumentError
from ..modeling_metaid import MetaIDForConditionalGeneration
from ..prompt_templates import TEMPLATES
from ..tokenization_metaid import MetaIDTokenizer
from ..training.time_budget import STEP_LIMIT, Reserve, TimeBudget
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
    *,
    budget_start: float | None = None,
    budget_reserve: Reserve = 0.0,
    **trainer_kwargs,
) -> TrainingRun:
    """Tokenizer → model → prompts → Trainer run; checkpoints (if any) go under ``output_dir/checkpoints``.

    The prompt format (``model_settings``' templates, history length, history in the decoder) is recorded in the
    model's config, so evaluation and ``recommend`` ask in the words the model learned. ``arguments`` override the
    training arguments the settings give (:func:`~hf_metaid.training_arguments` keywords); ``trainer_kwargs`` go to
    :func:`fine_tune` (``validation=`` a split keeps the best epoch's model) and :func:`~hf_metaid.build_trainer`.

    With ``settings.time_budget`` minutes (and no ``max_steps``), the run measures its step rate and trains the steps
    that fit (:class:`~hf_metaid.training.time_budget.TimeBudget`): the budget counts from ``budget_start``
    (``time.perf_counter()`` scale; default: this call), and keeps ``budget_reserve`` for what follows training
    (seconds, or a function of the model and tokenizer, such as
    :func:`~hf_metaid.training.time_budget.evaluation_reserve`).
    """
    budget_start = time.perf_counter() if budget_start is None else budget_start
    model_settings.model_options()  # a bad templates file fails before the tokenizer is built
    tokenizer = build_tokenizer(vocabulary, model_settings.base)
    model = build_model(tokenizer, model_settings, seed=settings.seed)
    return fine_tune(
        model,
        tokenizer,
        train_split,
        output_dir,
        settings,
        arguments,
        budget_start=budget_start,
        budget_reserve=budget_reserve,
        **trainer_kwargs,
    )


def fine_tune(
    model: MetaIDForConditionalGeneration,
    tokenizer: MetaIDTokenizer,
    train_split: datasets.Dataset,
    output_dir: str | os.PathLike,
    settings: TrainingSettings = TrainingSettings(),
    arguments: Mapping[str, object] | None = None,
    *,
    budget_start: float | None = None,
    budget_reserve: Reserve = 0.0,
    validation: datasets.Dataset | None = None,
    validation_options: Mapping[str, object] | None = None,
    **trainer_kwargs,
) -> TrainingRun:
    """Train ``model`` (built by :func:`build_model`, or a saved one, e.g. after :func:`extend_model`) on
    ``train_split``: interaction rows (``user``, ``item``, ``position``), turned into prompts in the format the
    model's config records (templates, history length, history in the decoder); or prompts already built (columns
    ``source`` and ``target``), e.g. only those whose target is new. ``settings`` drive the run as in :func:`train`,
    its time budget too.

    With a ``validation`` split (rows with ``user``, ``history``, ``target``), the recommender is evaluated on it at
    each epoch's end (and at the run's last step), with ``validation_options`` (options of
    :func:`~hf_metaid.evaluate_recommender`: ``limit`` users, ``exclude_seen`` ...; ``metric`` picks the metric,
    default ``hr@10``), each evaluation saved as a checkpoint under ``output_dir/checkpoints``, and the model that
    scored best is the one returned (the Trainer's ``load_best_model_at_end``). Its evaluations take training time,
    which a time budget counts as it goes: a ``limit`` keeps them short."""
    if validation is not None:
        trainer_kwargs, arguments = _keep_the_best(tokenizer, validation, validation_options, trainer_kwargs, arguments)
    budget = None
    if settings.time_budget > 0 and not settings.max_steps:
        budget = TimeBudget(settings.time_budget, started=budget_start, reserve=budget_reserve)
    config = model.config
    templates = config.metaid_prompt_templates or TEMPLATES
    built = {"source", "target"} <= set(train_split.column_names)
    if config.metaid_chain_prior and not built and not _has_chain_counts(model):
        set_chain_counts(model, tokenizer, train_split)  # the chain of the data the model learns from
    if built:
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
        max_steps=STEP_LIMIT if budget else settings.max_steps or -1,  # under a budget, the plan sets the last step
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        save_strategy=(arguments or {}).get("save_strategy", "no"),
        logging_steps=max(1, settings.logging_steps),
        seed=settings.seed,
        disable_tqdm=False,
        bf16={"on": True, "off": False}.get(settings.bf16, settings.bf16),
        # Decoder sequences range from 1 to max_history items: batches of similar length waste little on padding.
        train_sampling_strategy="group_by_length" if config.metaid_history_in_decoder else "random",
        **{key: value for key, value in (arguments or {}).items() if key != "save_strategy"},
    )
    trainer = build_trainer(model, tokenizer, prompts, training, lora=True if settings.lora else None, **trainer_kwargs)
    if budget is not None:
        budget.attach(trainer)
    started = time.perf_counter()
    result = trainer.train()
    return TrainingRun(trainer.model, tokenizer, trainer, time.perf_counter() - started, result.training_loss)


def _keep_the_best(tokenizer, validation, options, trainer_kwargs, arguments) -> tuple[dict, dict]:
    """The Trainer's keywords and arguments that evaluate ``validation`` at each epoch's end and load the best
    checkpoint by the recommendation metric at the end; arguments the caller gave win."""
    from ..evaluation.evaluator import RecommendationEvaluator

    if "evaluator" in trainer_kwargs:
        raise InvalidArgumentError("give validation= or evaluator=, not both")
    options = dict(options or {})
    metric = options.pop("metric", "hr@10")
    evaluator = RecommendationEvaluator(tokenizer, validation, **options)
    best = {
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": f"eval_{metric}",
        "greater_is_better": True,
        "save_total_limit": 1,
    }
    return {**trainer_kwargs, "evaluator": evaluator}, {**best, **(arguments or {})}


def set_chain_counts(model, tokenizer, train_split: datasets.Dataset, successors: int | None = None) -> int:
    """Count the item chain of ``train_split`` (interaction rows: each user's items in ``position`` order) into the
    model's chain prior (:mod:`hf_metaid.chain_prior`), turning it on with ``successors`` followers per item (default:
    the model's setting, else 50); returns how many transitions were counted. The training run calls it when the
    model's prior has no counts yet, so a model resumed or extended keeps the counts it was trained with."""
    width = successors if successors is not None else (model.config.metaid_chain_prior or 50)
    _, sequences = training_sequences(train_split)
    model.set_chain_prior(tokenizer, successors=width)
    return model.count_transitions(tokenizer, sequences)


def _has_chain_counts(model) -> bool:
    prior = getattr(model, "metaid_chain_prior", None)
    return prior is not None and bool(prior.counts.any())
