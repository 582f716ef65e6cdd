"""Evaluation with the paper's protocol, on its own and inside training."""

from __future__ import annotations

import datasets
import pytest

import hf_metaid as hm
from conftest import quiet_args, tiny_model
from hf_metaid.prompt_templates import COMPACT_TEMPLATES
from hf_metaid.training import RecommendationEvalCallback, build_trainer

datasets.disable_progress_bars()
pytestmark = pytest.mark.usefixtures("one_thread")


def test_recommendation_metrics_are_logged_during_training(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    model = tiny_model(tokenizer)
    callback = RecommendationEvalCallback(tokenizer, split["validation"], every_epoch=True, ks=(1, 5))
    args = quiet_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=8)
    trainer = build_trainer(model, tokenizer, dataset, args, callbacks=[callback])
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_hr@5" in entry]
    assert [entry["epoch"] for entry in logged] == [1.0, 2.0]
    direct = hm.evaluate_recommender(model, tokenizer, split["validation"], ks=(1, 5), progress=False)
    assert logged[-1]["eval_hr@5"] == direct["hr@5"] and logged[-1]["eval_ndcg@1"] == direct["ndcg@1"]
    assert logged[-1]["eval_num_users"] == split["validation"].num_rows


def test_evaluation_asks_in_the_recorded_training_words(tiny):
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer)
    rows = split["validation"]
    openp5 = hm.evaluate_recommender(model, tokenizer, rows, ks=(1, 5), progress=False)
    model.set_prompt_format(COMPACT_TEMPLATES, max_history=2)
    recorded = hm.evaluate_recommender(model, tokenizer, rows, ks=(1, 5), progress=False)
    spelled_out = hm.evaluate_recommender(
        model, tokenizer, rows, ks=(1, 5), progress=False, template="user {user} items {history}", max_history=2
    )
    assert {k: recorded[k] for k in ("hr@5", "mrr@5")} == {k: spelled_out[k] for k in ("hr@5", "mrr@5")}
    assert recorded["mrr@5"] != openp5["mrr@5"]
    unseen = hm.evaluate_recommender(model, tokenizer, rows, ks=(5,), template="unseen", progress=False)
    explicit = hm.evaluate_recommender(
        model,
        tokenizer,
        rows,
        ks=(5,),
        template=COMPACT_TEMPLATES["sequential"]["unseen"][0],
        max_history=2,
        progress=False,
    )
    assert unseen["mrr@5"] == explicit["mrr@5"]
