"""The paper's evaluation protocol: full-ranking top-k over every item, one held-out target per user.

This module ties the decoder (``model.recommend_batch``) to the metrics (``metrics``): for each row of a
leave-one-out ``validation`` or ``test`` split, the prompt shows the latest history items with a seen or unseen
template, the constrained decoder returns k real items, and HR/NDCG/MRR@k are computed. A target item the ID
vocabulary does not know (never seen in training and absent from the catalogue) simply counts as a miss.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import datasets
from tqdm.auto import tqdm

from .data.prompts import resolve_template
from .metrics import DEFAULT_KS, MetricAccumulator


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
    text = resolve_template(task, template, getattr(model, "prompt_templates", None))  # PEFT forwards attributes
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
        if task == "direct":
            batch_histories = None
        results = model.recommend_batch(
            tokenizer,
            batch_users,
            batch_histories,
            k=k,
            exclude_seen=exclude_seen,
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
