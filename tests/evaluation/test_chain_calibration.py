"""The chain prior's weights set on validation: the factor chosen scores best by more than the noise, the weights are
left at it (also when scoring fails half-way), the users are a seeded random sample, and bad requests are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hf_metaid as hm
import hf_metaid.evaluation.chain_calibration as calibration
from conftest import tiny_model
from hf_metaid.evaluation.chain_calibration import calibrate_chain_prior


@pytest.fixture()
def prior_model(tiny):
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer)
    model.set_prompt_format(max_history=8, history_in_decoder=True)
    hm.set_chain_counts(model, tokenizer, split["train"], successors=8)
    with torch.no_grad():
        model.metaid_chain_prior.weight.copy_(torch.tensor([0.5, 1.0]))
    return model.eval(), tokenizer, split


def gamma_of(model) -> float:
    return float(model.metaid_chain_prior.weight[1].detach())


def fake_gains(peak: float, noise: float, users: int = 400):
    """Per-user gains whose mean peaks where γ_r = ``peak``, with paired per-user noise of size ``noise``."""
    wobble = np.random.default_rng(0).normal(size=users)
    wobble -= wobble.mean()  # noise around the mean: the means stay the peak's

    def gains(model, tokenizer, rows, name, k, protocol):
        gamma = gamma_of(model)
        return 0.5 - 0.01 * abs(gamma - peak) + noise * wobble * gamma

    return gains


def test_a_clearly_better_factor_is_kept(prior_model, monkeypatch):
    model, tokenizer, split = prior_model
    monkeypatch.setattr(calibration, "_gains", fake_gains(peak=3.0, noise=0.0))
    chosen = calibrate_chain_prior(model, tokenizer, split["validation"], exclude_seen=True)
    assert chosen.scale == 3.0 and set(chosen.scores) == set(calibration.CHAIN_SCALES)
    assert model.metaid_chain_prior.weight.tolist() == pytest.approx([1.5, 3.0]) == list(chosen.weights)
    assert "x3 on" in chosen.summary()


def test_a_gain_within_the_noise_keeps_the_learned_weights(prior_model, monkeypatch):
    model, tokenizer, split = prior_model
    monkeypatch.setattr(calibration, "_gains", fake_gains(peak=3.0, noise=0.5))
    chosen = calibrate_chain_prior(model, tokenizer, split["validation"])
    assert max(chosen.scores, key=chosen.scores.get) == 3.0  # best on the sample, but not beyond its noise
    assert chosen.scale == 1.0 and chosen.standard_error > 0.02
    assert model.metaid_chain_prior.weight.tolist() == pytest.approx([0.5, 1.0])


def test_a_tie_keeps_the_smaller_factor_and_a_failure_keeps_the_best_so_far(prior_model, monkeypatch):
    model, tokenizer, split = prior_model
    monkeypatch.setattr(calibration, "_gains", lambda model, *rest: np.full(50, min(gamma_of(model), 2.0)))
    assert calibrate_chain_prior(model, tokenizer, split["validation"], scales=(4.0, 2.0)).scale == 2.0
    assert model.metaid_chain_prior.weight.tolist() == pytest.approx([1.0, 2.0])

    def failing(model, *rest):
        if gamma_of(model) > 5.0:
            raise RuntimeError("interrupted")
        return np.arange(50.0) * gamma_of(model)  # x2 beats x1 by far more than its error

    monkeypatch.setattr(calibration, "_gains", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        calibrate_chain_prior(model, tokenizer, split["validation"], scales=(2.0, 3.0))
    assert model.metaid_chain_prior.weight.tolist() == pytest.approx([2.0, 4.0])  # x2 of [1, 2]


def test_the_users_are_a_seeded_random_sample_and_the_gains_are_the_metric(prior_model, monkeypatch):
    model, tokenizer, split = prior_model
    validation = split["validation"]
    asked = []
    monkeypatch.setattr(calibration, "_gains", lambda m, t, rows, *rest: asked.append(rows["user"]) or np.zeros(3))
    calibrate_chain_prior(model, tokenizer, validation, scales=(1.0,), limit=5, seed=1)
    calibrate_chain_prior(model, tokenizer, validation, scales=(1.0,), limit=5, seed=1)
    calibrate_chain_prior(model, tokenizer, validation, scales=(1.0,), limit=5, seed=2)
    assert asked[0] == asked[1] != asked[2] and len(asked[0]) == 5 and asked[0] != validation["user"][:5]
    monkeypatch.undo()
    per_user = calibration._gains(model, tokenizer, validation, "ndcg", 10, {"exclude_seen": True})
    metrics = hm.evaluate_recommender(model, tokenizer, validation, exclude_seen=True, ks=(10,), progress=False)
    assert per_user.shape == (validation.num_rows,) and per_user.mean() == pytest.approx(metrics["ndcg@10"])
    hits = calibration._gains(model, tokenizer, validation, "hr", 10, {"exclude_seen": True})
    assert hits.mean() == pytest.approx(metrics["hr@10"])


def test_bad_requests_are_refused(prior_model, tiny):
    model, tokenizer, split = prior_model
    with pytest.raises(hm.InvalidArgumentError, match="positive"):
        calibrate_chain_prior(model, tokenizer, split["validation"], scales=(0.0,))
    with pytest.raises(hm.InvalidArgumentError, match="hr@k or ndcg@k"):
        calibrate_chain_prior(model, tokenizer, split["validation"], metric="recall@10")
    with pytest.raises(hm.InvalidArgumentError, match="no chain prior"):
        calibrate_chain_prior(tiny_model(tiny[1]), tokenizer, split["validation"])
