"""Training META ID models with the Hugging Face ``Seq2SeqTrainer``, fully or with LoRA.

The defaults here encode what is easy to get wrong with this model:

* no weight decay: the new ID-token rows (and PEFT's trainable-token rows, which are stored as absolute rows)
  would be pulled toward 0;
* LoRA trains the new rows of the *shared* table (one parameter for encoder, decoder and the tied ``lm_head``, the
  old rows stay bit-identical) and saves the augmentation F as a full module;
* the collator (:class:`~hf_metaid.collator.MetaIDDataCollator`) keeps only the model inputs, so the Trainer never
  has to guess columns from a ``forward`` signature;
* checkpoints keep optimizer, scheduler and RNG state, so ``trainer.train(resume_from_checkpoint=...)`` continues
  the run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import datasets
import torch
from transformers import PreTrainedModel, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from .collator import MetaIDDataCollator
from .data.prompts import tokenize_prompts
from .evaluation import evaluate_recommender
from .peft_utils import AUGMENTATION_MODULE, is_peft, unwrap


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
    base = unwrap(model)
    if not hasattr(base, "check_tokenizer"):
        raise TypeError(f"expected a MetaIDForConditionalGeneration, got {type(base).__name__}")
    base.check_tokenizer(tokenizer)
    if lora is not None and lora is not False:
        if is_peft(model):
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
        metrics = evaluate_recommender(unwrap(model), self.tokenizer, self.split, **self.protocol)
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
