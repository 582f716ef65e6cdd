"""The loop the training benchmarks share: skip an arm whose result file exists, train and save its model, evaluate it
with the user's history kept in the ranking (the paper's protocol) and left out (the demo's), and write the result
whole or not at all, so that a killed run never leaves a finished-looking arm and a series of runs resumes where it
stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from hf_metaid.evaluation.chain_calibration import calibrate_chain_prior
from hf_metaid.evaluation.evaluator import evaluate_recommender
from hf_metaid.saving.inference_folder import save_for_inference
from hf_metaid.saving.output_folders import atomic_file
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.splitting import decide_exclude_seen
from hf_metaid.workflow.training_run import train

# (protocol name in the result files, exclude_seen)
PROTOCOLS = (("kept", False), ("left out", True))


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` in one step (its folder made if needed): the old file or the whole new one."""
    with atomic_file(path, overwrite=True) as partial:
        partial.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def finished(out: Path, force: bool = False) -> bool:
    """Whether the arm whose result is ``out`` is done (said on stdout); ``force`` runs it again."""
    if out.exists() and not force:
        print(f"{out} exists: skipped", flush=True)
        return True
    return False


def run_arm(out: Path, measure: Callable[[], dict], force: bool = False) -> dict:
    """The record of one arm: read from ``out`` where it is finished, else measured and written atomically."""
    if finished(out, force):
        return json.loads(out.read_text(encoding="utf-8"))
    record = measure()
    write_json(out, record)
    return record


def calibration_exclude_seen(recipe: Recipe, train_split) -> bool:
    """The protocol the chain prior is calibrated under: the recipe's ``exclude_seen``, or the data's decision."""
    return decide_exclude_seen(train_split)[0] if recipe.exclude_seen is None else recipe.exclude_seen


def train_and_save(
    recipe: Recipe, splits: Mapping, names: dict | None, model_folder: Path, training_folder: Path, source=None
) -> dict:
    """Index the training split with ``recipe``'s scheme, train its model, save it for inference under
    ``model_folder``; the facts every result file quotes (seconds, loss, steps, epochs)."""
    started = time.perf_counter()
    vocabulary = build_vocabulary(splits["train"], names, recipe.index, scheme=recipe.scheme, source=source)
    index_seconds = time.perf_counter() - started
    result = train(splits["train"], vocabulary, training_folder, recipe.model, recipe.training)
    calibrated = {}
    if recipe.model.chain_prior:  # its weights set on validation, as the commands do (evaluation.chain_calibration)
        exclude = calibration_exclude_seen(recipe, splits["train"])
        chosen = calibrate_chain_prior(result.model, result.tokenizer, splits["validation"], exclude_seen=exclude)
        calibrated = {"chain_calibration": {"scale": chosen.scale, "scores": chosen.scores, "users": chosen.users}}
    save_for_inference(result.trainer, result.tokenizer, model_folder, overwrite=True)
    state = result.trainer.state
    return {
        "index_seconds": index_seconds,
        "train_seconds": result.seconds,
        "train_loss": result.loss,
        "steps": state.global_step,
        "epochs": state.epoch,
        **calibrated,
    }


def evaluate_protocols(model, tokenizer, rows, accumulators: Mapping | None = None, **options) -> dict[str, dict]:
    """The metrics of ``rows`` under both protocols, by name; ``accumulators`` (protocol -> MetricAccumulator)
    collect each user's rank where given; ``options`` go to ``evaluate_recommender``."""
    return {
        protocol: evaluate_recommender(
            model,
            tokenizer,
            rows,
            exclude_seen=exclude,
            progress=False,
            **({"accumulator": accumulators[protocol]} if accumulators else {}),
            **options,
        )
        for protocol, exclude in PROTOCOLS
    }
