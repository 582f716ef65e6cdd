"""The paper's evaluation protocol: full-ranking top-k over every item, one held-out target per user.

This module ties the decoder (``model.recommend_batch``) to the metrics (``metrics``): for each row of a
leave-one-out ``validation`` or ``test`` split, the prompt shows the latest history items with a seen or unseen
template, the constrained decoder returns k real items, and HR/NDCG/MRR@k are computed. A target item the ID
vocabulary does not know (never seen in training and absent from the catalogue) counts as a miss; a split whose
targets the vocabulary mostly does not know is refused (:data:`MIN_KNOWN_TARGETS`), since that is other data than the
model's, and its near-zero hit rate would read as a bad model.

:class:`RecommendationEvaluator` packs the protocol's options with a split, so a Trainer
(:class:`~hf_metaid.training.trainer.MetaIDTrainer`) can run it each time it evaluates and log the metrics it returns.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import datasets
from tqdm.auto import tqdm

from ..checks import check_bool, check_choice, check_int, check_number
from ..errors import InvalidArgumentError, UnknownDataError
from ..prompt_templates import TASKS, check_max_history, resolve_template
from ..training.peft_utils import unwrap
from .metrics import DEFAULT_KS, MetricAccumulator

__all__ = ["MIN_KNOWN_TARGETS", "RecommendationEvaluator", "evaluate_recommender"]

# The share of a split's target items the vocabulary must know for evaluate_recommender to run by default.
MIN_KNOWN_TARGETS = 0.5
SPLIT_COLUMNS = ("user", "history", "target")


def evaluate_recommender(
    model,
    tokenizer,
    split: datasets.Dataset,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    task: str = "sequential",
    template: str = "seen",
    mode: str = "beam",
    num_beams: int | None = None,
    exclude_seen: bool = False,
    max_history: int | None = None,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = True,
    min_known_targets: float = MIN_KNOWN_TARGETS,
    accumulator: MetricAccumulator | None = None,
) -> dict[str, float]:
    """HR@k / NDCG@k / MRR@k (and the invalid-ID rate) of ``model`` on a leave-one-out split.

    Args:
        split: rows with ``user``, ``history`` and ``target`` (``leave_one_out(...)["test"]`` or ``["validation"]``).
        ks: cut-offs; the decoder returns ``max(ks)`` items (beam width ``num_beams``, default the model's
            ``config.metaid_num_beams`` or ``max(ks)``).
        task: ``"sequential"`` (history in the prompt) or ``"direct"`` (user only).
        template: ``"seen"``, ``"unseen"`` (the first template of that kind in ``model.prompt_templates``: the ones
            it was trained with where recorded) or a template string with ``{user}`` / ``{history}``.
        mode: ``"beam"`` or ``"exact"`` decoding (see ``decoding``).
        exclude_seen: leave history items out of the decoding tree (off in the paper's protocol).
        max_history: history items per prompt (default: the training value recorded in the model's config).
        limit: evaluate only the first ``limit`` rows (quick checks).
        min_known_targets: refuse a split when the vocabulary knows less than this share of its target items
            (another data set than the model's); 0 evaluates anything.
        accumulator: an empty :class:`~hf_metaid.evaluation.metrics.MetricAccumulator` with these ``ks`` (and the
            catalogue as ``valid_items``, for ``invalid_rate``) to collect into, so that the caller can read each user's
            outcome afterwards (``accumulator.target_ranks()``, in split order).
    Returns:
        ``{"hr@5": ..., "ndcg@5": ..., "mrr@5": ..., ..., "invalid_rate": ..., "num_users": ..., "seen@5": ...,
        "seen@10": ..., "known_users": ..., "known_targets": ..., "seconds": ...}``; ``seen@k``: the share of the
        top k spent on the user's own history items (0 with ``exclude_seen``); ``known_users`` / ``known_targets``:
        how many of the split's users and target items the vocabulary knows (an unknown user is asked about as a new
        user, an unknown target is a miss).

    Raises:
        UnknownDataError: the vocabulary knows less than ``min_known_targets`` of the target items.
    """
    _check_protocol(model, tokenizer, split, task, mode, num_beams, exclude_seen, max_history, batch_size, limit)
    check_bool("progress", progress)
    check_number("min_known_targets", min_known_targets, 0.0, 1.0)
    # With the history in the decoder the encoder reads the direct task's prompt (the user), whatever the task.
    prompt_task = "direct" if getattr(model.config, "metaid_history_in_decoder", False) else task
    text = resolve_template(prompt_task, template, getattr(model, "prompt_templates", None))  # PEFT forwards them
    if limit is not None:
        split = split.select(range(min(limit, split.num_rows)))
    users, histories, targets = split["user"][:], split["history"][:], split["target"][:]
    vocabulary = tokenizer.entity_vocabulary
    if accumulator is None:
        accumulator = MetricAccumulator(ks=ks, valid_items=set(vocabulary.items))
    elif accumulator.num_users or accumulator.ks != MetricAccumulator(ks).ks:
        raise InvalidArgumentError(f"accumulator must be empty and built with the same ks, {tuple(ks)}")
    known_users = sum(vocabulary.has_user(user) for user in users)
    known_targets = sum(vocabulary.has_item(target) for target in targets)
    if known_targets < min_known_targets * len(targets):
        raise UnknownDataError(
            f"the model's ID vocabulary knows {known_targets} of the split's {len(targets)} target items and "
            f"{known_users} of its {len(users)} users: this is not the data the model was trained for (each unknown "
            f"target is a miss); evaluate anyway with min_known_targets=0 (hf-metaid evaluate --force)"
        )
    k = max(ks)
    started = time.perf_counter()
    bar = tqdm(total=len(users), desc="evaluating", unit="user", disable=not progress)
    for start in range(0, len(users), batch_size):
        stop = start + batch_size
        batch_users = [u if vocabulary.has_user(u) else None for u in users[start:stop]]
        batch_histories = [[i for i in h if vocabulary.has_item(i)] for h in histories[start:stop]]
        # A user the vocabulary does not know is asked about as a new user, from the known history; with neither,
        # there is nothing to ask, and the row is a miss.
        asked = [i for i, u in enumerate(batch_users) if u is not None or (task == "sequential" and batch_histories[i])]
        shown = None if task == "direct" else [batch_histories[i] for i in asked]  # direct prompts show the user only
        ranked = model.recommend_batch(
            tokenizer,
            [batch_users[i] for i in asked],
            shown,
            k=k,
            exclude=[batch_histories[i] for i in asked] if exclude_seen else None,  # whatever the prompt shows
            mode=mode,
            num_beams=num_beams,
            template=text,
            max_history=max_history,
            batch_size=batch_size,
        )
        results: list[list[str]] = [[] for _ in batch_users]
        for i, row in zip(asked, ranked, strict=True):
            results[i] = [item for item, _ in row]
        accumulator.add(results, targets[start:stop], histories[start:stop])
        bar.update(len(results))
    bar.close()
    metrics = accumulator.compute()
    metrics["known_users"] = float(known_users)
    metrics["known_targets"] = float(known_targets)
    metrics["seconds"] = time.perf_counter() - started
    return metrics


def _check_protocol(model, tokenizer, split, task, mode, num_beams, exclude_seen, max_history, batch_size, limit):
    """The arguments of :func:`evaluate_recommender`, checked before any decoding."""
    if not hasattr(model, "recommend_batch"):
        raise InvalidArgumentError(f"model must be a META ID model (with recommend_batch), got {type(model).__name__}")
    if getattr(tokenizer, "entity_vocabulary", None) is None:
        raise InvalidArgumentError(f"tokenizer must be a MetaIDTokenizer, got {type(tokenizer).__name__}")
    if not isinstance(split, datasets.Dataset) or not set(SPLIT_COLUMNS) <= set(split.column_names):
        found = split.column_names if isinstance(split, datasets.Dataset) else type(split).__name__
        raise InvalidArgumentError(
            f"split must be a datasets.Dataset with columns {SPLIT_COLUMNS} (leave_one_out(...)['test']), got {found}"
        )
    check_choice("task", task, TASKS)
    check_choice("mode", mode, ("beam", "exact"))
    check_bool("exclude_seen", exclude_seen)
    check_int("batch_size", batch_size, minimum=1)
    for name, value in (("num_beams", num_beams), ("limit", limit)):
        if value is not None:
            check_int(name, value, minimum=1)
    if max_history is not None:
        check_max_history(max_history)


class RecommendationEvaluator:
    """Full-ranking HR/NDCG/MRR@k of a model on one held-out split, as a dict of prefixed metrics.

    Token-level ``compute_metrics`` cannot score a recommender (a hit needs decoding over every item), so
    :class:`~hf_metaid.training.trainer.MetaIDTrainer` calls this inside ``evaluate()`` instead: the metrics then reach
    the Trainer's loggers, ``metric_for_best_model`` and early stopping like its own ``eval_loss``.

    Args:
        tokenizer: the model's :class:`MetaIDTokenizer`.
        split: rows with ``user``, ``history``, ``target`` (``leave_one_out(...)["validation"]``).
        **protocol: options of :func:`evaluate_recommender` (``ks``, ``template``, ``limit``, ``mode`` ...); a
            misspelt one fails here rather than at the first evaluation, after an epoch of training.
    """

    def __init__(self, tokenizer, split: datasets.Dataset, **protocol) -> None:
        try:
            inspect.signature(evaluate_recommender).bind(None, tokenizer, split, **protocol)
        except TypeError as err:  # a misspelt option
            raise InvalidArgumentError(f"RecommendationEvaluator: {err}") from None
        self.tokenizer = tokenizer
        self.split = split
        self.protocol = {"progress": False, **protocol}

    def __call__(self, model, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The metrics of :func:`evaluate_recommender`, named ``{metric_key_prefix}_{name}`` (``eval_hr@10``...);
        PEFT and DDP wrappers are looked through, so the trainer's model can be passed as is."""
        metrics = evaluate_recommender(unwrap(model), self.tokenizer, self.split, **self.protocol)
        return {f"{metric_key_prefix}_{name}" if metric_key_prefix else name: value for name, value in metrics.items()}
