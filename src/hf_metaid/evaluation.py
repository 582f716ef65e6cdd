"""The paper's evaluation protocol: full-ranking top-k over every item, one held-out target per user.

This module ties the decoder (``model.recommend_batch``) to the metrics (``metrics``): for each row of a
leave-one-out ``validation`` or ``test`` split, the prompt shows the latest history items with a seen or unseen
template, the constrained decoder returns k real items, and HR/NDCG/MRR@k are computed. A target item the ID
vocabulary does not know (never seen in training and absent from the catalogue) simply counts as a miss.

:class:`RecommendationEvaluator` packs the protocol's options with a split, so a Trainer
(:class:`~hf_metaid.training.MetaIDTrainer`) can run it each time it evaluates and log the metrics it returns.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import datasets
from tqdm.auto import tqdm

from .metrics import DEFAULT_KS, MetricAccumulator
from .peft_utils import unwrap
from .prompt_templates import resolve_template

__all__ = ["RecommendationEvaluator", "evaluate_recommender"]


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
) -> dict[str, float]:
    """HR@k / NDCG@k / MRR@k (and the invalid-ID rate) of ``model`` on a leave-one-out split.

    Args:
        split: rows with ``user``, ``history`` and ``target`` (``leave_one_out(...)["test"]`` or ``["validation"]``).
        ks: cut-offs; the decoder returns ``max(ks)`` items (beam width ``num_beams``, default ``max(ks)``).
        task: ``"sequential"`` (history in the prompt) or ``"direct"`` (user only).
        template: ``"seen"``, ``"unseen"`` (the first template of that kind in ``model.prompt_templates``: the ones
            it was trained with where recorded) or a template string with ``{user}`` / ``{history}``.
        mode: ``"beam"`` or ``"exact"`` decoding (see ``generation``).
        exclude_seen: leave history items out of the decoding tree (off in the paper's protocol).
        max_history: history items per prompt (default: the training value recorded in the model's config).
        limit: evaluate only the first ``limit`` rows (quick checks).
    Returns:
        ``{"hr@5": ..., "ndcg@5": ..., "mrr@5": ..., ..., "invalid_rate": ..., "num_users": ..., "seconds": ...}``
    """
    # With the history in the decoder the encoder reads the direct task's prompt (the user), whatever the task.
    prompt_task = "direct" if getattr(model.config, "metaid_history_in_decoder", False) else task
    text = resolve_template(prompt_task, template, getattr(model, "prompt_templates", None))  # PEFT forwards them
    if limit is not None:
        split = split.select(range(min(limit, split.num_rows)))
    users, histories, targets = split["user"][:], split["history"][:], split["target"][:]
    vocabulary = tokenizer.entity_vocabulary
    accumulator = MetricAccumulator(ks=ks, valid_items=set(vocabulary.items))
    k = max(ks)
    started = time.perf_counter()
    bar = tqdm(total=len(users), desc="evaluating", unit="user", disable=not progress)
    for start in range(0, len(users), batch_size):
        stop = start + batch_size
        batch_users = [u if vocabulary.has_user(u) else None for u in users[start:stop]]
        batch_histories = [[i for i in h if vocabulary.has_item(i)] for h in histories[start:stop]]
        results = model.recommend_batch(
            tokenizer,
            batch_users,
            None if task == "direct" else batch_histories,  # the direct task's prompt shows the user only
            k=k,
            exclude=batch_histories if exclude_seen else None,  # whatever the prompt shows
            mode=mode,
            num_beams=num_beams,
            template=text,
            max_history=max_history,
            batch_size=batch_size,
        )
        accumulator.add([[item for item, _ in row] for row in results], targets[start:stop])
        bar.update(len(results))
    bar.close()
    metrics = accumulator.compute()
    metrics["seconds"] = time.perf_counter() - started
    return metrics


class RecommendationEvaluator:
    """Full-ranking HR/NDCG/MRR@k of a model on one held-out split, as a dict of prefixed metrics.

    Token-level ``compute_metrics`` cannot score a recommender (a hit needs decoding over every item), so
    :class:`~hf_metaid.training.MetaIDTrainer` calls this inside ``evaluate()`` instead: the metrics then reach the
    Trainer's loggers, ``metric_for_best_model`` and early stopping like its own ``eval_loss``.

    Args:
        tokenizer: the model's :class:`MetaIDTokenizer`.
        split: rows with ``user``, ``history``, ``target`` (``leave_one_out(...)["validation"]``).
        **protocol: options of :func:`evaluate_recommender` (``ks``, ``template``, ``limit``, ``mode`` ...); a
            misspelt one fails here rather than at the first evaluation, after an epoch of training.
    """

    def __init__(self, tokenizer, split: datasets.Dataset, **protocol) -> None:
        inspect.signature(evaluate_recommender).bind(None, tokenizer, split, **protocol)
        self.tokenizer = tokenizer
        self.split = split
        self.protocol = {"progress": False, **protocol}

    def __call__(self, model, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The metrics of :func:`evaluate_recommender`, named ``{metric_key_prefix}_{name}`` (``eval_hr@10``...);
        PEFT and DDP wrappers are looked through, so the trainer's model can be passed as is."""
        metrics = evaluate_recommender(unwrap(model), self.tokenizer, self.split, **self.protocol)
        return {f"{metric_key_prefix}_{name}" if metric_key_prefix else name: value for name, value in metrics.items()}
