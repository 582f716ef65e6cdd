"""Evaluation with the paper's protocol, on its own and inside training."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from transformers import Seq2SeqTrainer, TrainerCallback

import hf_metaid as hm
from conftest import quiet_args, tiny_model
from hf_metaid.evaluation.evaluator import RecommendationEvaluator
from hf_metaid.evaluation.metrics import MetricAccumulator
from hf_metaid.prompt_templates import COMPACT_TEMPLATES
from hf_metaid.training.trainer import MetaIDTrainer, RecommendationEvalCallback, build_trainer

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


# ------------------------------------------------------------------------------------ the evaluator in the Trainer
class Recorder(TrainerCallback):
    """What the Trainer hands its loggers (``on_log``, as every ``report_to`` integration gets it) and callbacks."""

    def __init__(self) -> None:
        self.logs: list[dict] = []
        self.evaluations: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations.append(dict(metrics))


def test_evaluator_metrics_reach_the_loggers_without_an_eval_dataset(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    model = tiny_model(tokenizer)
    recorder = Recorder()
    evaluator = RecommendationEvaluator(tokenizer, split["validation"], ks=(5, 10))
    args = quiet_args(tmp_path, num_train_epochs=2, per_device_train_batch_size=8, eval_strategy="epoch")
    trainer = build_trainer(model, tokenizer, dataset, args, evaluator=evaluator, callbacks=[recorder])
    assert trainer.eval_dataset is None and trainer.args.eval_strategy == "epoch"
    trainer.train()
    logged = [entry for entry in recorder.logs if "eval_hr@10" in entry]
    assert [entry["epoch"] for entry in logged] == [1.0, 2.0]
    assert {"eval_hr@5", "eval_ndcg@10", "eval_mrr@10", "eval_invalid_rate", "eval_num_users"} <= set(logged[-1])
    assert "eval_loss" not in logged[-1]  # no eval_dataset: no loss pass
    assert [entry["eval_hr@10"] for entry in recorder.evaluations] == [entry["eval_hr@10"] for entry in logged]
    direct = hm.evaluate_recommender(model, tokenizer, split["validation"], ks=(5, 10), progress=False)
    assert logged[-1]["eval_hr@10"] == direct["hr@10"] and logged[-1]["eval_ndcg@5"] == direct["ndcg@5"]
    assert [entry for entry in trainer.state.log_history if "eval_hr@10" in entry][-1]["eval_hr@10"] == direct["hr@10"]

    again = trainer.evaluate(metric_key_prefix="test")
    assert again["test_hr@10"] == direct["hr@10"] and recorder.logs[-1]["test_hr@10"] == direct["hr@10"]


def test_evaluator_metrics_join_the_loss_in_one_log(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    recorder = Recorder()
    evaluator = RecommendationEvaluator(tokenizer, split["validation"], ks=(5,))
    args = quiet_args(tmp_path, per_device_eval_batch_size=8)
    trainer = build_trainer(
        tiny_model(tokenizer), tokenizer, dataset, args, eval_dataset=dataset, evaluator=evaluator, callbacks=[recorder]
    )
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_hr@5", "eval_ndcg@5"} <= set(metrics)
    assert len(recorder.logs) == 1 and {"eval_loss", "eval_hr@5"} <= set(recorder.logs[0])
    assert recorder.evaluations[0]["eval_hr@5"] == metrics["eval_hr@5"]
    assert not any(name.startswith("test_hr") for name in trainer.predict(dataset).metrics)  # predict: loss only


def test_best_checkpoint_is_chosen_by_hit_rate(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    evaluator = RecommendationEvaluator(tokenizer, split["validation"], ks=(10,))
    args = quiet_args(
        tmp_path,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=3e-3,  # here the hit rate peaks at the second epoch, so loading the best is visible
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="eval_hr@10",
    )
    trainer = build_trainer(tiny_model(tokenizer), tokenizer, dataset, args, evaluator=evaluator)
    trainer.train()
    scores = [(entry["step"], entry["eval_hr@10"]) for entry in trainer.state.log_history if "eval_hr@10" in entry]
    assert len(scores) == 3
    best = max(score for _, score in scores)
    first_best_step = next(step for step, score in scores if score == best)
    assert trainer.state.best_metric == best
    assert Path(trainer.state.best_model_checkpoint).name == f"checkpoint-{first_best_step}"
    assert trainer.evaluate()["eval_hr@10"] == best  # the best checkpoint was loaded back at the end


def test_evaluator_names_and_checks_its_options(tiny):
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer)
    evaluator = RecommendationEvaluator(tokenizer, split["validation"], ks=(1, 5), limit=6)
    direct = hm.evaluate_recommender(model, tokenizer, split["validation"], ks=(1, 5), limit=6, progress=False)
    prefixed = evaluator(model, "valid")
    assert set(prefixed) == {f"valid_{name}" for name in direct}
    assert prefixed["valid_hr@5"] == direct["hr@5"] and prefixed["valid_num_users"] == 6
    assert set(evaluator(model, "")) == set(direct)
    assert set(evaluator(model)) == {f"eval_{name}" for name in direct}
    with pytest.raises(TypeError):
        RecommendationEvaluator(tokenizer, split["validation"], kss=(5,))


def test_old_callback_needs_a_trainer_that_runs_it(tiny, tmp_path):
    split, tokenizer, dataset = tiny
    model = tiny_model(tokenizer)
    callback = RecommendationEvalCallback(tokenizer, split["validation"], every_epoch=True, ks=(5,))
    with pytest.raises(TypeError, match="evaluator="):
        Seq2SeqTrainer(model=model, args=quiet_args(tmp_path), train_dataset=dataset, callbacks=[callback])
    evaluator = RecommendationEvaluator(tokenizer, split["validation"])
    with pytest.raises(ValueError, match="one recommendation evaluator"):
        MetaIDTrainer(model, quiet_args(tmp_path), evaluator=evaluator, callbacks=[callback])
    with pytest.raises(ValueError, match="eval_dataset"):  # nothing to evaluate: the Trainer's own check stands
        MetaIDTrainer(model, quiet_args(tmp_path, eval_strategy="epoch"), train_dataset=dataset)


@pytest.mark.parametrize("task", ["sequential", "direct"])
def test_exclude_seen_leaves_the_history_out_for_every_task(tiny, task):
    """The direct task's prompt shows no history, but the user's items must still be left out of the ranking
    (evaluation once dropped the histories before they reached the decoder, and excluded nothing)."""
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer).eval()
    rows = split["test"]
    histories = {user: set(history) for user, history in zip(rows["user"], rows["history"], strict=True)}
    lists = []
    original = model.recommend_batch

    def recorded(tokenizer, users, *args, **kwargs):
        results = original(tokenizer, users, *args, **kwargs)
        lists.extend(zip(users, results, strict=True))
        return results

    model.recommend_batch = recorded
    shown = {}
    for exclude_seen in (False, True):
        lists.clear()
        metrics = hm.evaluate_recommender(
            model, tokenizer, rows, task=task, ks=(10,), exclude_seen=exclude_seen, progress=False
        )
        shown[exclude_seen] = sum(len({item for item, _ in recs} & histories[user]) for user, recs in lists)
        assert len(lists) == rows.num_rows and all(len(recs) == 10 for _, recs in lists)
        assert metrics["seen@10"] == pytest.approx(shown[exclude_seen] / (10 * rows.num_rows))  # what seen@k counts
    assert shown[False] > 0  # the model does rank history items when allowed to, so the check below can fail
    assert shown[True] == 0


@pytest.mark.numerics
def test_an_accumulator_gives_each_users_outcome_behind_the_metrics(tiny):
    """Per-user target ranks (for paired standard errors between two models): in split order, and the metrics
    recomputed from them are the returned ones; a used accumulator or other cut-offs are refused."""
    split, tokenizer, _ = tiny
    model = tiny_model(tokenizer).eval()
    rows = split["test"]
    accumulator = MetricAccumulator(ks=(1, 20))
    # batch_size=1: each user is decoded alone, as below, so the ranks agree bit for bit (a batch pads the prompts,
    # and its kernels may round otherwise, which could swap a target with a tied neighbour)
    metrics = hm.evaluate_recommender(
        model, tokenizer, rows, ks=(20, 1), progress=False, accumulator=accumulator, batch_size=1
    )
    ranks = accumulator.target_ranks()
    assert ranks.shape == (rows.num_rows,) and ranks.min() >= -1 and ranks.max() < 20
    assert (ranks >= 0).any()  # some targets are found, so the comparisons below can fail
    hits = (ranks >= 0) & (ranks < 20)
    assert metrics["hr@20"] == pytest.approx(float(hits.mean()), abs=1e-12)
    ndcg = np.where(hits, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0).mean()
    assert metrics["ndcg@20"] == pytest.approx(float(ndcg), abs=1e-12)
    for index in (0, rows.num_rows - 1):  # each user alone gives the rank at its place in the split
        single = MetricAccumulator(ks=(1, 20))
        hm.evaluate_recommender(model, tokenizer, rows.select([index]), ks=(1, 20), progress=False, accumulator=single)
        assert single.target_ranks().tolist() == ranks[index : index + 1].tolist()
    with pytest.raises(hm.InvalidArgumentError, match="accumulator must be empty"):
        hm.evaluate_recommender(model, tokenizer, rows, ks=(1, 20), progress=False, accumulator=accumulator)
    with pytest.raises(hm.InvalidArgumentError, match="same ks"):
        hm.evaluate_recommender(model, tokenizer, rows, ks=(10,), progress=False, accumulator=MetricAccumulator())
