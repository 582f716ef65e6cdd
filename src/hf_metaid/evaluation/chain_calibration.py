"""The chain prior's weights set on validation: how far to trust the item chain's counts at recommendation time.

Training learns the chain prior's weights γ (:mod:`hf_metaid.chain_prior`) from the sequences the network also
learns by heart: at a training target the network's own score already knows the transition, so the counts earn less
weight than they deserve on sequences it has not seen. Measured on the synthetic ``markov`` log (all 8,000
validation users, the ``fast`` recipe's model at 16 epochs, history left out): the learned γ = (0.83, 0.99) gave
HR@10 / NDCG@10 0.2601 / 0.1521, γ_c x1.2 and γ_r x1.1 0.2677 / 0.1555, both x0.8 0.2406 / 0.1439. The prior reads
counts against popularity, where γ = 1 is the smoothed chain itself, so the factors lie near 1. This step scales
both learned weights by the factor from ``scales`` that scores best on a validation split (never the test split), so
the choice is made where every other setting is made; the learned weights stay unless another factor is better by
more than the noise of the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import check_int
from ..errors import InvalidArgumentError
from ..training.peft_utils import unwrap
from .evaluator import evaluate_recommender
from .metrics import MetricAccumulator

# The factors tried: 1 keeps what training learned; the markov log's best lay between 1.1 and 1.2.
CHAIN_SCALES = (0.8, 1.0, 1.2, 1.5, 2.0, 3.0)
# Validation users each factor is scored on, drawn at random (seeded): the first users of a split are not a fair
# sample (on Beauty the first 2,000 favoured the factor 6, which lowered the whole split's NDCG@10 from 0.0630 to
# 0.0586).
CALIBRATION_USERS = 4000


@dataclass(frozen=True)
class ChainCalibration:
    """What :func:`calibrate_chain_prior` chose: the factor, the weights it set, each factor's score, and the paired
    standard error of the best factor's gain over the learned weights (the factor 1)."""

    scale: float
    weights: tuple[float, float]
    metric: str
    scores: dict[float, float]
    users: int
    standard_error: float

    def summary(self) -> str:
        """One line for a command's output."""
        tried = ", ".join(f"x{scale:g} {score:.4f}" for scale, score in self.scores.items())
        return (
            f"chain prior x{self.scale:g} on {self.users:,} validation users ({self.metric}: {tried}; "
            f"a factor other than 1 must gain more than one standard error, {self.standard_error:.4f})"
        )


def calibrate_chain_prior(
    model,
    tokenizer,
    split,
    *,
    scales: tuple[float, ...] = CHAIN_SCALES,
    limit: int | None = CALIBRATION_USERS,
    metric: str = "ndcg@10",
    seed: int = 0,
    **protocol,
) -> ChainCalibration:
    """Scale the chain prior's learned weights by the factor of ``scales`` that scores best in ``metric`` (``hr@k`` or
    ``ndcg@k``) on ``limit`` users of ``split`` (a validation split) drawn at random with ``seed``, and leave them
    set. The learned weights (the factor 1, always scored) are kept unless the best factor gains more than one paired
    standard error over them: a noisy sample should not move a model that trained well.

    ``protocol``: the options of :func:`~hf_metaid.evaluation.evaluator.evaluate_recommender` the model will be
    evaluated with (``exclude_seen``, ``mode``, ...), so the choice is made under the protocol that follows.

    Raises:
        InvalidArgumentError: a model without the chain prior, a factor ≤ 0, or a metric other than ``hr@k`` /
            ``ndcg@k``.
    """
    prior = _prior_of(model)
    if any(not isinstance(s, (int, float)) or isinstance(s, bool) or s <= 0 for s in scales):
        raise InvalidArgumentError(f"scales must be positive numbers, got {scales!r}")
    name, _, cutoff = metric.partition("@")
    if name not in ("hr", "ndcg") or not cutoff.isdigit() or int(cutoff) < 1:
        raise InvalidArgumentError(f"metric must be hr@k or ndcg@k, got {metric!r}")
    if limit is not None:
        check_int("limit", limit, minimum=1)
    rows = split
    if limit is not None and limit < split.num_rows:
        picked = np.random.default_rng(seed).choice(split.num_rows, size=limit, replace=False)
        rows = split.select(np.sort(picked))
    learned = prior.weight.detach().clone()
    gains: dict[float, np.ndarray] = {}
    try:
        for scale in dict.fromkeys((1.0, *map(float, scales))):
            with torch.no_grad():
                prior.weight.copy_(learned * scale)
            gains[scale] = _gains(model, tokenizer, rows, name, int(cutoff), protocol)
    finally:
        best, error = _choose(gains)
        with torch.no_grad():
            prior.weight.copy_(learned * best)
    scores = {scale: float(values.mean()) for scale, values in gains.items()}
    weights = tuple(float(w) for w in prior.weight.detach().tolist())
    return ChainCalibration(best, weights, metric, scores, rows.num_rows, error)


def _gains(model, tokenizer, rows, name: str, k: int, protocol: dict) -> np.ndarray:
    """Each user's hit (``hr``) or discounted gain (``ndcg``) at ``k``, in the order of ``rows``."""
    accumulator = MetricAccumulator(ks=(k,))
    evaluate_recommender(model, tokenizer, rows, ks=(k,), progress=False, accumulator=accumulator, **protocol)
    ranks = accumulator.target_ranks()
    hit = (ranks >= 0) & (ranks < k)
    if name == "hr":
        return hit.astype(float)
    return np.where(hit, 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0), 0.0)


def _choose(gains: dict[float, np.ndarray]) -> tuple[float, float]:
    """The factor to keep and the paired standard error of its gain over the factor 1 (1: nothing else scored, or
    no factor better by more than that error; ties keep the smaller factor)."""
    if 1.0 not in gains or len(gains) == 1:
        return 1.0, 0.0
    best = max(gains, key=lambda s: (gains[s].mean(), -s))
    difference = gains[best] - gains[1.0]
    error = float(difference.std(ddof=1) / np.sqrt(len(difference))) if len(difference) > 1 else 0.0
    return (best, error) if difference.mean() > error else (1.0, error)


def _prior_of(model):
    """The chain prior module that scores (PEFT's trained copy where the model is wrapped)."""
    base = unwrap(model)
    if not getattr(base.config, "metaid_chain_prior", 0):
        raise InvalidArgumentError("the model has no chain prior to calibrate (chain_prior=0)")
    module = base.metaid_chain_prior
    copies = getattr(module, "modules_to_save", None)  # a PEFT ModulesToSaveWrapper: the active adapter's copy
    return copies[module.active_adapters[0]] if copies is not None else module
