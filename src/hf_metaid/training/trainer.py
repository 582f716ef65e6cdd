"""Training META ID models with the Hugging Face ``Seq2SeqTrainer``, fully or with LoRA.

The defaults here encode what is easy to get wrong with this model:

* no weight decay: the new ID-token rows (and PEFT's trainable-token rows, which are stored as absolute rows)
  would be pulled toward 0;
* LoRA trains the new rows of the *shared* table (one parameter for encoder, decoder and the tied ``lm_head``, the
  old rows stay bit-identical) and saves the augmentation F as a full module;
* the collator (:class:`~hf_metaid.training.collator.MetaIDDataCollator`) keeps only the model inputs, so the Trainer
  never has to guess columns from a ``forward`` signature;
* checkpoints keep optimizer, scheduler and RNG state, so ``trainer.train(resume_from_checkpoint=...)`` continues
  the run exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import datasets
import torch
from accelerate.utils import broadcast_object_list
from transformers import PreTrainedModel, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import EvalLoopOutput, IntervalStrategy

from ..checks import check_int, check_number
from ..data.prompts import tokenize_prompts
from ..errors import InvalidArgumentError
from ..evaluation.evaluator import RecommendationEvaluator
from .collator import MetaIDDataCollator
from .peft_utils import (
    AUGMENTATION_MODULE,
    CHAIN_PRIOR_MODULE,
    ITEM_INPUT_MODULE,
    ITEM_OUTPUT_MODULE,
    REPEAT_BIAS_MODULE,
    is_peft,
    unwrap,
)


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
    decoder and the tied ``lm_head``); ``modules_to_save=["metaid_augmentation"]`` trains and saves F (and
    ``"metaid_item_output"`` / ``"metaid_item_input"``, the items' own vectors, ``"metaid_repeat_bias"`` and
    ``"metaid_chain_prior"``, where the model has them).
    """
    from peft import LoraConfig

    config = getattr(model, "config", None)
    if not getattr(config, "metaid_num_new_tokens", 0):
        raise InvalidArgumentError(
            "the model has no META ID tokens; build it with MetaIDForConditionalGeneration.from_base"
        )
    check_int("r", r, minimum=1)
    check_number("alpha", alpha, 0, above=True)
    check_number("dropout", dropout, 0, 1)
    if isinstance(target_modules, str) or not all(isinstance(name, str) for name in target_modules):
        raise InvalidArgumentError(f"target_modules must be a list of module names, got {target_modules!r}")
    fields = {
        "task_type": "SEQ_2_SEQ_LM",
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "target_modules": list(target_modules),
        "trainable_token_indices": {"shared": list(config.metaid_token_range)},
        "modules_to_save": [
            AUGMENTATION_MODULE,
            *([ITEM_OUTPUT_MODULE] if config.metaid_item_output else []),
            *([ITEM_INPUT_MODULE] if config.metaid_item_input else []),
            *([REPEAT_BIAS_MODULE] if getattr(config, "metaid_repeat_bias", False) else []),
            *([CHAIN_PRIOR_MODULE] if getattr(config, "metaid_chain_prior", 0) else []),
        ],
    }
    fields.update(overrides)
    return LoraConfig(**fields)


def training_arguments(
    output_dir: str | os.PathLike, bf16: bool | str = False, **overrides
) -> Seq2SeqTrainingArguments:
    """``Seq2SeqTrainingArguments`` with the paper's recipe as defaults (AdamW, lr 1e-3, linear decay, warmup).

    Defaults that matter: ``weight_decay=0`` (decay pulls new rows to 0), ``remove_unused_columns=False`` (the
    collator selects the inputs), ``dataloader_pin_memory=False``, ``report_to="none"``, ``use_cpu`` when no GPU is
    visible, ``ddp_find_unused_parameters=False`` (every trainable parameter, F included, takes part in each step).
    Any keyword overrides them.

    ``bf16``: ``True`` / ``False`` for bf16 mixed precision or not, ``"auto"`` for bf16 on a GPU that runs it
    natively (:func:`has_native_bf16`) and float32 on a CPU. On a CPU with AMX tiles bf16 autocast trained the demo's
    model at 20% fewer steps per CPU second than float32, to the same loss, and its oneDNN kernels, one compiled per
    tensor shape, grew the resident memory by about 5 MB a step as the batches' shapes varied
    (``benchmarks/results/train_memory.md``); ``True`` still asks for it.

    On a CPU ``full_determinism`` defaults to on (torch's deterministic algorithms): two CPU threads otherwise sum some
    gradients in a varying order, so the same seed gave another model at every run; on this project's 2-core
    machines it costs a few percent at most (``benchmarks/determinism.py``). On a GPU it stays off (the Trainer's
    full determinism also serialises CUDA launches); pass ``full_determinism=True`` to have it there.
    """
    if not isinstance(bf16, bool) and bf16 != "auto":
        raise InvalidArgumentError(f"bf16 must be True, False or 'auto', got {bf16!r}")
    if not isinstance(output_dir, (str, os.PathLike)) or not str(output_dir):
        raise InvalidArgumentError(f"output_dir must be a path, got {output_dir!r}")
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
    defaults.setdefault("full_determinism", bool(defaults["use_cpu"]))
    on_gpu = not defaults["use_cpu"] and torch.cuda.is_available()
    defaults["bf16"] = (on_gpu and has_native_bf16()) if bf16 == "auto" else bf16
    try:
        return Seq2SeqTrainingArguments(output_dir=str(output_dir), **defaults)
    except (TypeError, ValueError) as err:  # an unknown keyword, or a value the Trainer's own checks refuse
        raise InvalidArgumentError(f"training arguments: {err}") from None


def has_native_bf16(use_cpu: bool = False) -> bool:
    """Whether bf16 runs natively where training runs: on a GPU that supports it, or (``use_cpu``, or no GPU) on a
    CPU with AMX tiles. Elsewhere bf16 is emulated, and mixed precision would be slower than float32."""
    if not use_cpu and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


# ------------------------------------------------------------------------------------------------------ trainer
class MetaIDTrainer(Seq2SeqTrainer):
    """A ``Seq2SeqTrainer`` whose evaluation also scores the recommender with the paper's full-ranking protocol.

    With ``evaluator=`` (a :class:`~hf_metaid.evaluation.evaluator.RecommendationEvaluator`), every ``evaluate()``
    (those that ``eval_strategy`` triggers and explicit calls) runs it and merges its metrics (``eval_hr@10`` ...) into
    the evaluation output before the Trainer logs it. So they reach ``Trainer.log`` and with it every ``report_to``
    integration and callback, and ``metric_for_best_model="eval_hr@10"`` can choose the best checkpoint. Without an
    ``eval_dataset`` only the recommendation metrics are computed (no loss pass), and ``eval_strategy`` may still be
    set. In a multi-process run the main process decodes and shares the metrics, so that every process takes the
    same best-checkpoint and saving decisions. A dict of eval datasets gets the metrics under each dataset's prefix.

    ``data_collator`` defaults to :class:`~hf_metaid.training.collator.MetaIDDataCollator` on ``processing_class``. The
    first six arguments are those of ``Seq2SeqTrainer``; the others (``callbacks``, ``compute_metrics`` ...) are
    keywords.
    """

    def __init__(
        self,
        model: PreTrainedModel | None = None,
        args: Seq2SeqTrainingArguments | None = None,
        data_collator=None,
        train_dataset: datasets.Dataset | None = None,
        eval_dataset: datasets.Dataset | None = None,
        processing_class=None,
        *,
        evaluator: RecommendationEvaluator | None = None,
        callbacks: Sequence[TrainerCallback] | None = None,
        **kwargs,
    ) -> None:
        legacy = [callback for callback in callbacks or () if isinstance(callback, RecommendationEvalCallback)]
        if legacy:
            if evaluator is not None or len(legacy) > 1:
                raise ValueError("give one recommendation evaluator: evaluator= or one RecommendationEvalCallback")
            evaluator = legacy[0].evaluator
            legacy[0]._adopted = True
        self.evaluator = evaluator
        if data_collator is None and processing_class is not None:
            data_collator = MetaIDDataCollator(processing_class)
        strategy = None if args is None else args.eval_strategy
        if evaluator is not None and eval_dataset is None and args is not None:
            # The Trainer refuses an eval_strategy without an eval_dataset; here the evaluator is what it evaluates.
            args.eval_strategy = IntervalStrategy.NO
        try:
            super().__init__(
                model,
                args,
                data_collator,
                train_dataset,
                eval_dataset,
                processing_class,
                callbacks=None if callbacks is None else list(callbacks),
                **kwargs,
            )
        finally:
            if args is not None:
                args.eval_strategy = strategy

    def evaluate(
        self,
        eval_dataset: datasets.Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
        **gen_kwargs,
    ) -> dict[str, float]:
        """``Seq2SeqTrainer.evaluate`` with the evaluator's metrics merged in; without any eval dataset, those only."""
        if self.evaluator is None or eval_dataset is not None or self.eval_dataset is not None:
            return super().evaluate(
                eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix, **gen_kwargs
            )
        metrics = self._recommendation_metrics(metric_key_prefix)
        self.log(metrics)  # as Trainer.evaluate does: loggers first, then the callbacks' on_evaluate
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        """The loss pass of ``evaluate()`` (not ``predict()``), plus the evaluator's metrics, merged here because
        ``Trainer.evaluate`` logs this output and hands it to ``on_evaluate`` (early stopping reads it there)."""
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.evaluator is not None and description == "Evaluation":
            output.metrics.update(self._recommendation_metrics(metric_key_prefix))
        return output

    def _recommendation_metrics(self, metric_key_prefix: str) -> dict[str, float]:
        """The evaluator's metrics, decoded by the main process and shared with the others."""
        metrics = [self.evaluator(self.model, metric_key_prefix) if self.is_world_process_zero() else None]
        if self.args.world_size > 1:
            broadcast_object_list(metrics, from_process=0)
        return metrics[0]

    def _get_train_sampler(self, train_dataset: datasets.Dataset | None = None) -> torch.utils.data.Sampler | None:
        """The Trainer's sampler, with a length-grouped sampler's lengths read once into a list.

        The Trainer hands ``LengthGroupedSampler`` the dataset's lazy length column, which the sampler then reads one
        row at a time at every epoch start (1.6 CPU seconds for the demo's 23,692 windows, about 3% of an epoch's
        training); the same lengths as a list give the same batches in milliseconds."""
        sampler = super()._get_train_sampler(train_dataset)
        lengths = getattr(sampler, "lengths", None)
        if isinstance(sampler, LengthGroupedSampler) and not isinstance(lengths, list):
            sampler.lengths = lengths[:] if isinstance(lengths, datasets.arrow_dataset.Column) else list(lengths)
        return sampler


def build_trainer(
    model: PreTrainedModel,
    tokenizer,
    train_dataset: datasets.Dataset,
    args: Seq2SeqTrainingArguments,
    eval_dataset: datasets.Dataset | None = None,
    lora=None,
    max_source_length: int = 512,
    evaluator: RecommendationEvaluator | None = None,
    **trainer_kwargs,
) -> MetaIDTrainer:
    """A :class:`MetaIDTrainer` for a META ID model, after checking that model and tokenizer share an ID vocabulary.

    Args:
        model: a :class:`MetaIDForConditionalGeneration` (or a PEFT model around one).
        train_dataset: tokenized (``input_ids``/``labels``) or raw prompt dataset (``source``/``target``), which is
            tokenized here with :func:`tokenize_prompts`.
        eval_dataset: the same for the Trainer's loss evaluation (optional).
        lora: ``None`` (full fine-tuning), ``True`` (:func:`lora_config` defaults) or a ``peft.LoraConfig``.
        evaluator: a :class:`~hf_metaid.evaluation.evaluator.RecommendationEvaluator` run at each evaluation
            (HR/NDCG@k).
        trainer_kwargs: passed to :class:`MetaIDTrainer` (callbacks, compute_metrics, ...).
    """
    base = unwrap(model)
    if not hasattr(base, "check_tokenizer"):
        raise InvalidArgumentError(f"expected a MetaIDForConditionalGeneration, got {type(base).__name__}")
    base.check_tokenizer(tokenizer)
    _check_trainer_arguments(train_dataset, args, eval_dataset, lora, max_source_length, evaluator)
    if lora is not None and lora is not False:
        if is_peft(model):
            raise InvalidArgumentError("the model is already a PEFT model; pass lora=None")
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model) if lora is True else lora)
    train_dataset = _tokenized(train_dataset, tokenizer, max_source_length)
    if args.train_sampling_strategy in ("group_by_length", "batch_rebalance"):
        train_dataset = _with_lengths(train_dataset, args.length_column_name)
    if eval_dataset is not None:
        eval_dataset = _tokenized(eval_dataset, tokenizer, max_source_length)
    return MetaIDTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        evaluator=evaluator,
        **trainer_kwargs,
    )


def _check_trainer_arguments(train_dataset, args, eval_dataset, lora, max_source_length, evaluator) -> None:
    """The arguments of :func:`build_trainer` other than the model and tokenizer, checked before any work."""
    from peft import LoraConfig

    given = {"train_dataset": train_dataset, **({} if eval_dataset is None else {"eval_dataset": eval_dataset})}
    for name, dataset in given.items():
        columns = dataset.column_names if isinstance(dataset, datasets.Dataset) else []
        if not ({"input_ids", "labels"} <= set(columns) or {"source", "target"} <= set(columns)):
            found = columns if isinstance(dataset, datasets.Dataset) else type(dataset).__name__
            raise InvalidArgumentError(
                f"{name} must be a datasets.Dataset of prompts (source/target, or input_ids/labels), got {found}"
            )
    if not isinstance(args, Seq2SeqTrainingArguments):
        raise InvalidArgumentError(f"args must be Seq2SeqTrainingArguments (training_arguments()), got {args!r:.80}")
    if lora is not None and not isinstance(lora, (bool, LoraConfig)):
        raise InvalidArgumentError(f"lora must be None, True, False or a peft.LoraConfig, got {lora!r}")
    check_int("max_source_length", max_source_length, minimum=1)
    if evaluator is not None and not isinstance(evaluator, RecommendationEvaluator):
        raise InvalidArgumentError(f"evaluator must be a RecommendationEvaluator, got {type(evaluator).__name__}")


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
    """HR/NDCG/MRR@k during training, the earlier way: ``evaluator=`` is the way now
    (``build_trainer(..., evaluator=RecommendationEvaluator(tokenizer, split, ...))``, or the same on
    :class:`MetaIDTrainer`).

    Passed in ``callbacks=`` to :func:`build_trainer` or :class:`MetaIDTrainer`, it becomes the trainer's evaluator:
    whenever the Trainer evaluates (``eval_strategy``), and at every epoch end with ``every_epoch=True``, the metrics
    are logged as ``eval_hr@10`` etc. through ``Trainer.log``. Another Trainer cannot run it and refuses it at
    construction.

    Args:
        tokenizer: the model's :class:`MetaIDTokenizer`.
        split: rows with ``user``, ``history``, ``target`` (``leave_one_out(...)["validation"]``).
        every_epoch: also evaluate at each epoch end, without an ``eval_dataset``.
        **protocol: options of :func:`~hf_metaid.evaluation.evaluator.evaluate_recommender` (``ks``, ``template``,
            ``limit``, ``mode`` ...).

    Attributes:
        history: the metrics of every evaluation, with its ``epoch`` and ``step``.
    """

    def __init__(self, tokenizer, split: datasets.Dataset, every_epoch: bool = False, **protocol) -> None:
        self.evaluator = RecommendationEvaluator(tokenizer, split, **protocol)
        self.every_epoch = every_epoch
        self.history: list[dict[str, float]] = []
        self._adopted = False

    def on_init_end(self, args, state, control, **kwargs):
        if not self._adopted:
            raise TypeError(
                "RecommendationEvalCallback runs through MetaIDTrainer or build_trainer; with another Trainer its "
                "metrics would be lost. Use MetaIDTrainer(..., evaluator=RecommendationEvaluator(...))"
            )

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.every_epoch:
            control.should_evaluate = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.history.append({**metrics, "step": state.global_step})
