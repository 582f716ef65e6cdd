"""A validation split given to the training run keeps the best epoch's model by the recommendation metric."""

from __future__ import annotations

import datasets
import pytest

import hf_metaid as hm
from conftest import tiny_model
from hf_metaid.workflow.training_run import fine_tune

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_validation_split_keeps_the_best_epoch_by_the_recommendation_metric(tiny, tmp_path, monkeypatch):
    """Evaluated at each epoch's end, the model whose validation HR@10 was best is the one the run returns: here the
    score falls after the first epoch, so the first epoch's weights come back, not the last ones."""
    from safetensors.torch import load_file

    from hf_metaid.evaluation.evaluator import RecommendationEvaluator

    split, tokenizer, _ = tiny
    scores = iter([0.5, 0.3, 0.1])
    seen = []

    def falling(self, model, metric_key_prefix="eval"):
        seen.append(self.protocol["limit"])
        return {f"{metric_key_prefix}_hr@10": next(scores)}

    monkeypatch.setattr(RecommendationEvaluator, "__call__", falling)
    settings = hm.TrainingSettings(epochs=3, batch_size=8, warmup_steps=0, logging_steps=1, learning_rate=1e-2)
    model = tiny_model(tokenizer)
    run = fine_tune(model, tokenizer, split["train"], tmp_path, settings, validation=split["validation"],
                    validation_options={"limit": 5})  # fmt: skip
    state = run.trainer.state
    per_epoch = len(run.trainer.get_train_dataloader())
    assert seen == [5, 5, 5] and state.best_metric == 0.5 and state.global_step == 3 * per_epoch
    assert state.best_model_checkpoint.endswith(f"checkpoint-{per_epoch}")
    saved = load_file(f"{state.best_model_checkpoint}/model.safetensors")
    weights = run.model.state_dict()
    assert all(torch_equal(weights[name], tensor) for name, tensor in saved.items())


def test_a_validation_split_scores_each_epoch_for_real(tiny, tmp_path):
    """Unpatched: the evaluator's HR@10 of each epoch is logged, and the best of them is the run's best."""
    split, tokenizer, _ = tiny
    settings = hm.TrainingSettings(epochs=2, batch_size=8, warmup_steps=0, logging_steps=1, learning_rate=1e-2)
    run = fine_tune(tiny_model(tokenizer), tokenizer, split["train"], tmp_path, settings,
                    validation=split["validation"], validation_options={"exclude_seen": True})  # fmt: skip
    scores = [entry["eval_hr@10"] for entry in run.trainer.state.log_history if "eval_hr@10" in entry]
    assert len(scores) == 2 and run.trainer.state.best_metric == max(scores)
    with pytest.raises(ValueError, match="give validation= or evaluator=, not both"):
        fine_tune(tiny_model(tokenizer), tokenizer, split["train"], tmp_path, settings,
                  validation=split["validation"], evaluator=object())  # fmt: skip


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a.to(b.dtype), b)
