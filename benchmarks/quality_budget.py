"""Hit rate per minute of CPU training: which changes make the small model learn items (Beauty, or the synthetic log).

Each arm is the prompt-mode recipe (``fast-prompt`` of ``hf_metaid.workflow.recipes``, the demo's until the narrow
decoder arm below became the demo, ``fast``: spectral IDs, tiny T5 1+3 layers, d_model 128, d_ff 1024) with a few
settings changed (``ARMS``), or a named recipe with a few settings changed (``RECIPE_VARIANTS``); ``run --recipe
NAME`` runs a named recipe as it is, as the arm ``recipe-NAME`` (``--recipe best``: the 60-minute row). ``run ARM``
trains it once (the model is saved under ``--work``, so a later ``--split test`` evaluates the same weights without
training again), evaluates every user of the split under both protocols (history kept, the paper's; history left out
of the ranking, the demo's), and writes ``results/quality_budget/ARM.SPLIT.json`` (settings, steps, epochs, seconds,
threads, CPU, metrics). An arm whose file exists is skipped, so a series of runs resumes where it stopped. ``table``
writes ``results/quality_budget.md`` from the JSON files, with the counting references of ``results/count_baselines.md``
beside them.

Choose on the validation split; run ``--split test`` only for the chosen arms.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_budget.py run dec-w50 --threads 2
    python benchmarks/quality_budget.py run --recipe best --split test --threads 1
    python benchmarks/quality_budget.py run best-neg4096 --threads 1   # best with a setting changed (RECIPE_VARIANTS)
    python benchmarks/quality_budget.py run dec-w50 --split test
    python benchmarks/quality_budget.py seen dec-w50      # seen@k for a JSON written before it was reported
    python benchmarks/quality_budget.py calibration --recipe best --scales 2,3,4,5,6,8   # a wider chain-prior range
    python benchmarks/quality_budget.py table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads (thread_policy.md)

import torch

import budget_comparison
from benchmark_common import cpu_and_cores, write_report
from budget_comparison import SELECTIONS, chosen_arm
from harness import calibration_exclude_seen, evaluate_protocols, finished, run_arm, train_and_save, write_json
from hf_metaid.evaluation.chain_calibration import calibrate_chain_prior
from hf_metaid.evaluation.evaluator import evaluate_recommender
from hf_metaid.saving.inference_folder import load_for_inference
from hf_metaid.workflow import recipes
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.settings import ModelSettings
from hf_metaid.workflow.splitting import split_data

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quality_budget"
TABLE = HERE / "results" / "quality_budget.md"
COUNTS = HERE / "results" / "count_baselines.md"
BUDGETS = (15, 30, 60)  # minutes of training on the 2-core machine
BASE = recipes.get("fast-prompt")  # the recipe the arms change
RECIPE_ARM = "recipe-"  # the arm of a named recipe run as it is: recipe-NAME

# name -> (changes to BASE.model, changes to BASE.training, what the arm tests)
DECODER = {"history_in_decoder": True, "max_history": 50, "batch_size": 64, "epochs": 6.0}
# The decoder recipe (recipes "decoder-k100"; "fast" is it with the sampled objective below on K = 200) as changes to
# BASE: a narrow model with items' own vectors, reading windows of 20 history items in its decoder under an anonymous
# prompt.
NARROW = {"item_output": True, "item_input": True, "dropout": 0.3, "d_model": 64, "d_ff": 256, "layers": (1, 2)}
# The narrow model with the all-items objective over the batch's targets and 1,024 drawn items.
SAMPLED = {**NARROW, "item_loss": 1.0, "item_loss_negatives": 1024}
ANONYMOUS_W20 = {**DECODER, "max_history": 20, "templates": "benchmarks/templates/anonymous_decoder.json"}
ARMS: dict[str, tuple[dict, dict, str]] = {
    "prompt-demo": ({}, {}, "the demo's recipe: one prompt per prefix, last 5 items in the encoder, 4.5 epochs"),
    "dec-w50": ({}, DECODER, "history in the decoder, windows of 50 items, 64 users per batch, 6 epochs"),
    "dec-w20": ({}, {**DECODER, "max_history": 20}, "windows of 20 items"),
    "dec-w50-tree": ({"tree_softmax": True}, DECODER, "tree softmax"),
    "dec-w50-lr2e-3": ({}, {**DECODER, "learning_rate": 2e-3}, "lr 2e-3"),
    "dec-w50-lr8e-3": ({}, {**DECODER, "learning_rate": 8e-3}, "lr 8e-3"),
    "dec-w50-b32": ({}, {**DECODER, "batch_size": 32}, "32 users per batch"),
    "dec-w50-2+2": ({"layers": (2, 2)}, DECODER, "2 encoder + 2 decoder layers"),
    "dec-w50-d256": ({"d_model": 256}, DECODER, "d_model 256"),
    "dec-w20-e12": ({}, {**DECODER, "max_history": 20, "epochs": 12.0}, "windows of 20 items, 12 epochs"),
    "item": ({"item_output": True}, {}, "the demo's recipe with the item output (each item's own output vector)"),
    "item-tree": ({"item_output": True, "tree_softmax": True}, {}, "item output and tree softmax"),
    "item-io": ({"item_output": True, "item_input": True}, {}, "item output and item input (each item's own vectors)"),
    "item-in": ({"item_input": True}, {}, "item input only (each item's own encoder vector)"),
    "item-io-no-user": (
        {"item_output": True, "item_input": True},
        {"templates": "benchmarks/templates/history_only.json"},
        "item output and input, prompts without the user's ID tokens (nothing to memorise a user by)",
    ),
    "item-io-e12": ({"item_output": True, "item_input": True}, {"epochs": 12.0}, "item output and input, 12 epochs"),
    "dec-w20-e12-item": (
        {"item_output": True},
        {**DECODER, "max_history": 20, "epochs": 12.0},
        "history in the decoder (windows of 20, 12 epochs) with the item output",
    ),
    "dec-w20-e12-item-io": (
        {"item_output": True, "item_input": True},
        {**DECODER, "max_history": 20, "epochs": 12.0},
        "history in the decoder (windows of 20, 12 epochs), each item's own input (in the decoder) and output vectors",
    ),
    "dec-w20-e12-item-io-drop0.2": (
        {"item_output": True, "item_input": True, "dropout": 0.2},
        {**DECODER, "max_history": 20, "epochs": 12.0},
        "the same with dropout 0.2 (the decoder mode memorises training sequences without it)",
    ),
    "dec-w20-e12-item-io-drop0.4": (
        {"item_output": True, "item_input": True, "dropout": 0.4},
        {**DECODER, "max_history": 20, "epochs": 12.0},
        "the same with dropout 0.4",
    ),
    "dec-w20-e8-in-drop0.4": (
        {"item_input": True, "dropout": 0.4},
        {**DECODER, "max_history": 20, "epochs": 8.0},
        "history in the decoder (windows of 20, 8 epochs), each item's own input vector in the decoder, dropout 0.4",
    ),
    "dec-w20-e12-anon": (
        {},
        {**DECODER, "max_history": 20, "epochs": 12.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "history in the decoder (windows of 20, 12 epochs), an anonymous encoder prompt (no user ID to memorise)",
    ),
    "dec-w20-e12-item-io-anon": (
        {"item_output": True, "item_input": True},
        {**DECODER, "max_history": 20, "epochs": 12.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "the same with each item's own input (in the decoder) and output vectors",
    ),
    "dec-w20-e12-item-io-anon-drop0.1": (
        {"item_output": True, "item_input": True, "dropout": 0.1},
        {**DECODER, "max_history": 20, "epochs": 12.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "the same with dropout 0.1 (the items' own vectors memorise training sequences)",
    ),
    "dec-w20-e12-item-io-anon-drop0.2": (
        {"item_output": True, "item_input": True, "dropout": 0.2},
        {**DECODER, "max_history": 20, "epochs": 12.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "the same with dropout 0.2",
    ),
    "dec-w20-e7-item-io-anon-drop0.2": (
        {"item_output": True, "item_input": True, "dropout": 0.2},
        {**DECODER, "max_history": 20, "epochs": 7.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "the best arm (anonymous, items' own vectors, dropout 0.2) cut to 7 epochs, the demo's 15-minute budget",
    ),
    "dec-small-e40-item-io-anon-drop0.3": (
        NARROW,
        {**ANONYMOUS_W20, "epochs": 40.0},
        "a narrow model (d_model 64, d_ff 256, 1+2 layers) trained for 40 epochs with dropout 0.3, as SASRec trains",
    ),
    "dec-w20-e12-item-io-anon-drop0.1-loss1": (
        {"item_output": True, "item_input": True, "dropout": 0.1, "item_loss": 1.0},
        {**DECODER, "max_history": 20, "epochs": 12.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "the best arm plus the all-items objective (each target against every item, weight 1)",
    ),
    "item-io-loss1": (
        {"item_output": True, "item_input": True, "item_loss": 1.0},
        {},
        "the demo's prompts with the items' own vectors and the all-items objective (weight 1)",
    ),
    "dec-small-e16-item-io-anon-drop0.3": (
        NARROW,
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the narrow model for 16 epochs (the demo's budget)",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1": (
        {**NARROW, "item_loss": 1.0},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the narrow model for 16 epochs with the all-items objective (weight 1)",
    ),
    "dec-small-e24-item-io-anon-drop0.3-loss1": (
        {**NARROW, "item_loss": 1.0},
        {**ANONYMOUS_W20, "epochs": 24.0},
        "the narrow model for 24 epochs with the all-items objective (weight 1)",
    ),
    "dec-small-e40-item-io-anon-drop0.3-loss1": (
        {**NARROW, "item_loss": 1.0},
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the narrow model for 40 epochs with the all-items objective (weight 1), the 60-minute budget",
    ),
    "dec-small-e40-item-io-anon-drop0.5": (
        {**NARROW, "dropout": 0.5},
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the narrow model for 40 epochs with dropout 0.5 (SASRec's Beauty setting)",
    ),
    "dec-small-e16-item-io-anon-drop0.3-k200": (
        NARROW,
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the narrow model for 16 epochs on 200 clusters instead of 100",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024": (
        SAMPLED,
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the narrow model for 16 epochs with the all-items objective over the batch's targets and 1,024 drawn items",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-k200": (
        SAMPLED,
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the same on 200 clusters",
    ),
    "dec-small-e32-item-io-anon-drop0.3-loss1-neg1024": (
        SAMPLED,
        {**ANONYMOUS_W20, "epochs": 32.0},
        "the narrow model for 32 epochs with the sampled all-items objective (1,024 drawn items), the 30-minute budget",
    ),
    "dec-small-e40-item-io-anon-drop0.3-loss1-neg1024": (
        SAMPLED,
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the narrow model for 40 epochs with the sampled all-items objective (1,024 drawn items)",
    ),
    "dec-small-e60-item-io-anon-drop0.3-loss1-neg1024": (
        SAMPLED,
        {**ANONYMOUS_W20, "epochs": 60.0},
        "the narrow model for 60 epochs with the sampled all-items objective (1,024 drawn items), the 60-minute budget",
    ),
    "dec-small-e40-item-io-anon-drop0.3-loss1-repeat": (
        {**NARROW, "item_loss": 1.0, "repeat_bias": True},
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the 60-minute arm with the learned repeat score (one β on every item the decoder has read)",
    ),
    "dec-small-e40-item-io-anon-drop0.3-loss1-neg1024-repeat": (
        {**SAMPLED, "repeat_bias": True},
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the 30-minute arm with the learned repeat score",
    ),
    "dec-small-e60-item-io-anon-drop0.3-loss1-neg1024-repeat": (
        {**SAMPLED, "repeat_bias": True},
        {**ANONYMOUS_W20, "epochs": 60.0},
        "the 60-epoch sampled arm with the learned repeat score",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-k200-repeat": (
        {**SAMPLED, "repeat_bias": True},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the demo's recipe with the learned repeat score",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-chain50": (
        {**SAMPLED, "chain_prior": 50},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the demo's recipe with the item chain's counts as a learned prior (50 followers per item), in its first "
        "form, log(1 + n) on the logits (not rerun since the lift replaced it)",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-lift50": (
        {**SAMPLED, "chain_prior": 50},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the demo's recipe with the chain prior reading each count against the item's popularity, "
        "log(1 + n / (a p(i)))",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-lift50-beam20": (
        {**SAMPLED, "chain_prior": 50, "num_beams": 20},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the lift50 arm decoded with a beam of 20 (the same weights: its model folder copied, the width set in its "
        "config)",
    ),
    "dec-small-e60-item-io-anon-drop0.3-loss1-neg1024-lift50-repeat-beam20": (
        {**SAMPLED, "chain_prior": 50, "repeat_bias": True, "num_beams": 20},
        {**ANONYMOUS_W20, "epochs": 60.0},
        "the 60-epoch sampled arm with the chain prior (as a lift), the learned repeat score and a beam of 20: best "
        "at its fixed length",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-lift50-beam20-items512": (
        {**SAMPLED, "chain_prior": 50, "num_beams": 20},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the lift50 arm at beam 20 on IDs for the items alone (users, whom its prompt never names, get none) with at "
        "most 512 items a cluster: the rank tokens number as many as the largest cluster's items",
    ),
    "dec-small-e60-item-io-anon-drop0.3-loss1-neg1024-lift50-repeat-beam20-items512": (
        {**SAMPLED, "chain_prior": 50, "repeat_bias": True, "num_beams": 20},
        {**ANONYMOUS_W20, "epochs": 60.0},
        "best's 60-epoch arm on IDs for the items alone, at most 512 items a cluster",
    ),
    "dec-small-e16-item-io-anon-drop0.3-loss1-neg1024-chain50-repeat": (
        {**SAMPLED, "chain_prior": 50, "repeat_bias": True},
        {**ANONYMOUS_W20, "epochs": 16.0},
        "the demo's recipe with the chain prior and the learned repeat score",
    ),
    "dec-small-e24-item-io-anon-drop0.3-loss1-k200": (
        {**NARROW, "item_loss": 1.0},
        {**ANONYMOUS_W20, "epochs": 24.0},
        "the narrow model for 24 epochs with the all-items objective (weight 1), on 200 clusters",
    ),
    "dec-small-e40-item-io-anon-drop0.3-loss1-k200": (
        {**NARROW, "item_loss": 1.0},
        {**ANONYMOUS_W20, "epochs": 40.0},
        "the narrow model for 40 epochs with the all-items objective (weight 1), on 200 clusters",
    ),
    "dec-w20-e30-anon-drop0.1": (
        {"dropout": 0.1},
        {**DECODER, "max_history": 20, "epochs": 30.0, "templates": "benchmarks/templates/anonymous_decoder.json"},
        "history in the decoder, anonymous prompt, 30 epochs, dropout 0.1 (a longer budget)",
    ),
    "dec-w20-e12-in": (
        {"item_input": True},
        {**DECODER, "max_history": 20, "epochs": 12.0},
        "history in the decoder (windows of 20, 12 epochs), each item's own input vector in the decoder",
    ),
}

# name -> (named recipe, changes to its model, changes to its training, what the arm tests): arms that change a
# named recipe rather than BASE, such as capacity spent in best's 60 minutes instead of more epochs (fast at 19 epochs
# already matched best at 71 on validation, history left out). The first four were measured when best's chain prior
# read the last item alone (recipe-best's files): they keep it so. best-earlier3 and fast-earlier3 are best and fast
# as they are now, the runs that chose the reach (recipe-best's and recipe-fast's files are the recipes before it).
BEST_OF_THE_LAST_ITEM = {"chain_prior_earlier": 0}
RECIPE_VARIANTS: dict[str, tuple[str, dict, dict, str]] = {
    "best-d128": (
        "best",
        {**BEST_OF_THE_LAST_ITEM, "d_model": 128, "d_ff": 512},
        {},
        "best twice as wide (d_model 128, d_ff 512): the 60 minutes spent on capacity, at about half the step rate",
    ),
    "best-neg4096": (
        "best",
        {**BEST_OF_THE_LAST_ITEM, "item_loss_negatives": 4096},
        {},
        "best with 4,096 drawn items in the all-items objective instead of 1,024 (a third of Beauty's catalogue, "
        "nearer a full softmax)",
    ),
    "best-loss2": (
        "best",
        {**BEST_OF_THE_LAST_ITEM, "item_loss": 2.0},
        {},
        "best with the all-items objective weighted 2 against the two-token one (1 in best): more of the signal a "
        "sequential recommender trains on",
    ),
    "best-drop0.4": (
        "best",
        {**BEST_OF_THE_LAST_ITEM, "dropout": 0.4},
        {},
        "best with dropout 0.4 instead of 0.3 (the wider model scored lower on validation: the narrow one may be "
        "bound by overfitting, not capacity)",
    ),
    **{
        f"best-earlier{earlier}": (
            "best",
            {"chain_prior_earlier": earlier},
            {},
            f"best with the chain prior reading the {earlier} items before the last too, at a learned decay (counting "
            "alone, the last 3 items' chain passes the last item's by 0.011 HR@10 on validation)",
        )
        for earlier in (2, 3)
    },
    "fast-earlier3": (
        "fast",
        {"chain_prior_earlier": 3},
        {},
        "fast with the chain prior reading the 3 items before the last too, at a learned decay (as best does)",
    ),
}

# name -> changes to BASE.index, for the arms that change the IDs themselves (the others keep K=100).
INDEX_CHANGES: dict[str, dict] = {
    **{arm: {"num_clusters": 200} for arm in ARMS if arm.endswith("-k200")},
    **{arm: {"user_ids": False, "max_cluster_size": 512} for arm in ARMS if arm.endswith("-items512")},
}


# The demo's recipe as recorded in results/demo.md (fourth round: the demo model, trained on two threads of an idle
# machine, validation split; test in its first table). Not rerun here: a 4.5-epoch prompt run costs about 11 minutes
# on an idle machine, several times that on a shared one.
DEMO_REFERENCE = (
    "| prompt-demo (results/demo.md) | beauty | validation | the demo's recipe, 4.5 epochs of prompts | 4620 | 4.5 "
    "| 629 (2) | 41 | — | 0.0480 | — | — | — | 0.0531 | — |\n"
    "| prompt-demo (results/demo.md) | beauty | test | the same model | 4620 | 4.5 | 629 (2) | 41 | 0.0199 | 0.0358 "
    "| 0.0126 | 0.0177 | — | 0.0407 | 0.0205 |"
)


def run(
    arm: str,
    split_name: str,
    threads: int,
    work: Path,
    data: str = "beauty",
    max_steps: int = 0,
    results: Path = RESULTS,
) -> Path:
    """Train ``arm`` on ``data`` (unless its model is saved under ``work``), evaluate ``split_name`` both ways, write
    the JSON (``ARM.SPLIT.json`` on Beauty, ``ARM.DATA.SPLIT.json`` on other data) under ``results``.
    ``max_steps`` cuts training short (a smoke run of the whole path; its JSON says so)."""
    tag = arm_tag(arm, data)
    out = results / f"{tag}.{split_name}.json"
    if finished(out):
        return out
    torch.set_num_threads(threads)
    recipe = arm_recipe(arm, max_steps)
    index_settings, model_settings, training_settings = recipe.index, recipe.model, recipe.training
    splits, names = split_data(data)
    folder = work / tag
    trained, model_folder = folder / "training.json", folder / "model"
    facts = run_arm(  # the model is trained once, whichever split is evaluated first
        trained,
        lambda: {**train_and_save(recipe, splits, names, model_folder, folder / "training"), "train_threads": threads},
    )
    model, tokenizer = load_for_inference(model_folder)
    metrics = evaluate_protocols(model, tokenizer, splits[split_name])
    record = {
        "arm": arm,
        "data": data,
        "what": arm_description(arm),
        "split": split_name,
        "index": index_settings.to_dict(),
        "model": dataclasses.asdict(model_settings),
        "training": dataclasses.asdict(training_settings),
        **facts,
        "eval_threads": threads,
        "cpu": cpu_and_cores(),
        "command": "python " + shlex.join(sys.argv),
        "metrics": metrics,
    }
    write_json(out, record)
    print(json.dumps({p: {k: round(v, 4) for k, v in m.items()} for p, m in metrics.items()}))
    return out


def arm_recipe(arm: str, max_steps: int = 0) -> Recipe:
    """The recipe an arm trains: BASE with the arm's changes (``ARMS``), a named recipe with its variant's changes
    (``RECIPE_VARIANTS``), or the named recipe of ``recipe-NAME``; ``max_steps`` > 0 cuts its training short."""
    if arm.startswith(RECIPE_ARM):
        return _with_changes(recipes.get(arm.removeprefix(RECIPE_ARM)), {}, {"max_steps": max_steps})
    if arm in RECIPE_VARIANTS:
        name, model_changes, training_changes, _ = RECIPE_VARIANTS[arm]
        return _with_changes(recipes.get(name), model_changes, {**training_changes, "max_steps": max_steps})
    model_changes, training_changes, _ = ARMS[arm]
    # The arms were written when the prompt format was a training setting: it is the model's now.
    changes = {**model_changes, **training_changes, "max_steps": max_steps}
    model_fields = {field.name for field in dataclasses.fields(ModelSettings)}
    return _with_changes(
        BASE,
        {key: value for key, value in changes.items() if key in model_fields},
        {key: value for key, value in changes.items() if key not in model_fields},
        INDEX_CHANGES.get(arm, {}),
    )


def _with_changes(recipe: Recipe, model: dict, training: dict, index: dict | None = None) -> Recipe:
    """``recipe`` with fields of its model, training and index settings replaced."""
    return dataclasses.replace(
        recipe,
        index=dataclasses.replace(recipe.index, **(index or {})),
        model=dataclasses.replace(recipe.model, **model),
        training=dataclasses.replace(recipe.training, **training),
    )


def arm_description(arm: str) -> str:
    """What an arm tests (a named recipe: its summary)."""
    if arm.startswith(RECIPE_ARM):
        return "the recipe " + arm.removeprefix(RECIPE_ARM) + ": " + recipes.entry(arm.removeprefix(RECIPE_ARM)).summary
    if arm in RECIPE_VARIANTS:
        return RECIPE_VARIANTS[arm][3]
    return ARMS[arm][2]


def arm_tag(arm: str, data: str) -> str:
    """The name of an arm's JSON files and model folder: the arm on Beauty, ``ARM.DATA`` on other data."""
    return arm if data == "beauty" else f"{arm}.{Path(data).stem}"


def backfill_seen(
    arm: str, split_name: str, threads: int, work: Path, data: str = "beauty", results: Path = RESULTS
) -> Path:
    """Add ``seen@k`` (the share of the top k spent on the user's history items, history kept) to an arm's JSON
    written before evaluation reported it, from its saved model under ``work``; the hit rates evaluated again must
    match the stored ones (the same weights and code give the same lists)."""
    tag = arm_tag(arm, data)
    out = results / f"{tag}.{split_name}.json"
    record = json.loads(out.read_text())
    if "seen@10" in record["metrics"]["kept"]:
        print(f"{out} has seen@k: skipped")
        return out
    torch.set_num_threads(threads)
    model, tokenizer = load_for_inference(work / tag / "model")
    splits, _ = split_data(record["data"])
    again = evaluate_recommender(model, tokenizer, splits[split_name], progress=False)
    stored = record["metrics"]["kept"]
    if any(abs(again[key] - stored[key]) > 1e-9 for key in ("hr@10", "ndcg@10")):
        raise SystemExit(f"{arm}: evaluated again, HR@10 {again['hr@10']:.4f} against {stored['hr@10']:.4f} stored")
    stored.update({key: value for key, value in again.items() if key.startswith("seen@")})
    out.write_text(json.dumps(record, indent=2, sort_keys=True))
    print(f"{arm} {split_name}: seen@10 {again['seen@10']:.4f}")
    return out


def calibration_scan(
    arm: str,
    scales: tuple[float, ...],
    threads: int,
    work: Path,
    data: str = "beauty",
    results: Path = RESULTS,
) -> Path:
    """Score the chain prior's factors ``scales`` (multiples of the weights training learned) on an arm's saved
    model, on the validation users and under the protocol its calibration used, and write
    ``results/calibration/ARM.json``: whether a range wider than ``CHAIN_SCALES`` would have chosen otherwise.
    The saved model is not changed; its factor comes from the arm's validation JSON."""
    tag = arm_tag(arm, data)
    record = json.loads((results / f"{tag}.validation.json").read_text())
    if "chain_calibration" not in record:
        raise SystemExit(f"{arm}: its validation JSON records no chain-prior calibration (a model without the prior?)")
    trained = record["chain_calibration"]["scale"]
    torch.set_num_threads(threads)
    model, tokenizer = load_for_inference(work / tag / "model")
    splits, _ = split_data(data)
    exclude = calibration_exclude_seen(arm_recipe(arm), splits["train"])
    chosen = calibrate_chain_prior(  # relative to the saved weights, which are the learned ones times `trained`
        model, tokenizer, splits["validation"], scales=tuple(s / trained for s in scales), exclude_seen=exclude
    )
    scan = {
        "arm": arm,
        "data": data,
        "trained_scale": trained,
        "scores": {f"{s * trained:g}": score for s, score in sorted(chosen.scores.items())},
        "chosen": chosen.scale * trained,
        "standard_error": chosen.standard_error,
        "metric": chosen.metric,
        "users": chosen.users,
        "cpu": cpu_and_cores(),
        "command": "python " + shlex.join(sys.argv),
    }
    out = results / "calibration" / f"{tag}.json"
    write_json(out, scan)
    print(json.dumps(scan["scores"]), "chosen x" + f"{scan['chosen']:g}")
    return out


def calibration_lines(results: Path = RESULTS) -> list[str]:
    """The wider chain-prior scans of ``calibration_scan``, a row each."""
    scans = [json.loads(p.read_text()) for p in sorted((results / "calibration").glob("*.json"))]
    if not scans:
        return []
    return [
        "",
        "## The chain prior's factor over a wider range",
        "",
        "Training sets the chain prior's weights to the learned ones times the factor of `CHAIN_SCALES` "
        "(`hf_metaid.evaluation.chain_calibration`) that scores best on validation; `quality_budget.py calibration "
        "ARM --scales ...` scores more factors on the saved model, on the same validation users "
        "(NDCG@10 under the calibration's protocol).",
        "",
        "| arm | data | factor at training | factor a wider range chooses | validation users | scores |",
        "|---|---|---:|---:|---:|---|",
        *(
            f"| {s['arm']} | {s['data']} | x{s['trained_scale']:g} | x{s['chosen']:g} | {s['users']:,} | "
            + ", ".join(f"x{factor} {score:.4f}" for factor, score in s["scores"].items())
            + " |"
            for s in scans
        ),
    ]


def _seen(metrics: dict) -> str:
    """seen@10 as a table cell; a dash for an arm evaluated before it was reported (see ``seen``)."""
    return f"{metrics['seen@10']:.4f}" if "seen@10" in metrics else "—"


def budget_rows(records: list[dict], budgets: tuple[int, ...] = BUDGETS) -> list[str]:
    """The best Beauty arm per training budget and protocol: among the arms with a test result whose training took no
    longer than the budget, the one with the best validation HR@10 under that protocol; nothing is chosen on test.
    Every row shows the chosen arm's test figures under both protocols."""
    beauty = [r for r in records if r.get("data", "beauty") == "beauty"]
    validation = {r["arm"]: r for r in beauty if r["split"] == "validation"}
    test = {r["arm"]: r for r in beauty if r["split"] == "test"}
    lines = [
        "| training budget | chosen on validation HR@10 with | chosen arm | train s (threads) | epochs | validation "
        "HR@10 | test HR@5 | HR@10 | NDCG@5 | NDCG@10 | seen@10 | test HR@10 left out | NDCG@10 left out |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for minutes in budgets:
        for protocol, described in SELECTIONS:
            arm = chosen_arm(beauty, minutes, protocol)
            if arm is None:
                lines.append(
                    f"| {minutes} minutes | {described} | (no arm with a test result trained within it) |" + " |" * 10
                )
                continue
            chosen, kept, out = validation[arm], test[arm]["metrics"]["kept"], test[arm]["metrics"]["left out"]
            lines.append(
                f"| {minutes} minutes | {described} | {arm} | {chosen['train_seconds']:.0f} "
                f"({chosen['train_threads']}) | {chosen['epochs']:.0f} | {chosen['metrics'][protocol]['hr@10']:.4f} | "
                f"{kept['hr@5']:.4f} | {kept['hr@10']:.4f} | {kept['ndcg@5']:.4f} | {kept['ndcg@10']:.4f} | "
                f"{_seen(kept)} | {out['hr@10']:.4f} | {out['ndcg@10']:.4f} |"
            )
    return lines


def table(results: Path = RESULTS, report: Path = TABLE) -> None:
    """``results/quality_budget.md`` from the JSON files: the best arm per budget, then every arm (validation rows
    first)."""
    records = [json.loads(file.read_text()) for file in sorted(results.glob("*.json"))]
    records.sort(key=lambda r: (r.get("data", "beauty"), r["split"] != "validation", r["arm"]))
    header = (
        "| arm | data | split | what | steps | epochs | train s (threads) | eval s | HR@5 | HR@10 | NDCG@5 | NDCG@10 "
        "| seen@10 | HR@10 left out | NDCG@10 left out |\n"
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = []
    for r in records:
        kept, out = r["metrics"]["kept"], r["metrics"]["left out"]
        rows.append(
            f"| {r['arm']} | {r.get('data', 'beauty')} | {r['split']} | {r['what']} | {r['steps']} | {r['epochs']:.1f} "
            f"| {r['train_seconds']:.0f} ({r['train_threads']}) | {kept['seconds']:.0f} | {kept['hr@5']:.4f} "
            f"| {kept['hr@10']:.4f} | {kept['ndcg@5']:.4f} | {kept['ndcg@10']:.4f} | {_seen(kept)} "
            f"| {out['hr@10']:.4f} | {out['ndcg@10']:.4f} |"
        )
    cpu = records[0]["cpu"] if records else cpu_and_cores()
    counts = []
    for name, path in (("Beauty", COUNTS), ("the synthetic markov log", COUNTS.with_name("count_baselines_markov.md"))):
        if path.exists():
            counts += ["", f"On {name} (`{path.name}`):", ""]
            counts += [line for line in path.read_text().splitlines() if line.startswith("|")]
    commands = sorted({r["command"] for r in records})
    comparison = budget_comparison.comparison_lines(records, BUDGETS)
    lines = [
        "# Quality per training budget: what makes the small model learn items",
        "",
        "`benchmarks/quality_budget.py` (its docstring has the arms and the protocol). Beauty (or the synthetic "
        "`markov` log), spectral IDs (K=100 unless the arm's name ends in `-k200`), every user of the split, "
        "beam 10; HR/NDCG with the history kept (the paper's protocol) and HR@10/NDCG@10 with it left out of the "
        "ranking (the demo's); seen@10: the share of the top 10 (history kept) spent on the user's own history "
        "items, which no Beauty user takes again (— for arms evaluated before it was reported: `seen ARM` adds it "
        "from the saved model). One HR@10 near 0.05 "
        "over 22,363 users has a binomial standard error of sqrt(p(1-p)/n) = 0.0015; the same settings trained on "
        "another thread count move by about as much (`demo.md`), so differences under 0.003 are noise here. "
        "Train seconds on a shared machine: "
        f"compare steps and epochs too. CPU: {cpu}; `OMP_WAIT_POLICY=PASSIVE`. Eval s: the history-kept "
        "evaluation; dec-w50 and dec-w50-tree were evaluated before the decoder prefix ran on its real tokens "
        "only, on a loaded machine (33 s on two threads with the current code, `demo.md`, sixth round). "
        "With the history in the decoder, validation flatters: a validation prefix is the very sequence the model "
        "was trained on, and such models score far higher on a training item than on a new one "
        "(`memorisation.md`), so their validation gains have never carried to test; judge them on test.",
        "",
        "## The best recipe per training budget (Beauty test; chosen on validation)",
        "",
        "Among the arms below that have a test result and trained within the budget (train seconds as measured, "
        "on one thread unless said, often beside another run), the one with the best validation HR@10 under each "
        "protocol: with the history kept (the paper's protocol) and with it "
        "left out (the demo's); each row gives its arm's test figures under both. The demo (`hf-metaid demo`) is "
        "the 15-minute recipe, its evaluation and indexing included (`demo.md`).",
        "",
        *budget_rows(records),
        "",
        "## The recipes against the references at each budget",
        "",
        *comparison,
        "",
        "## Every arm",
        "",
        header,
        DEMO_REFERENCE,
        *rows,
        "",
        "Counting references on the same splits (`count_baselines.py`; HR@10 / NDCG@10):",
        *counts,
        *calibration_lines(results),
    ]
    write_report(report, lines, commands)
    budget_comparison.write(comparison, report.with_name(budget_comparison.REPORT.name))


def _scales(text: str) -> tuple[float, ...]:
    """Positive factors from the command line: ``2,3,4``."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"factors must be numbers separated by commas, got {text!r}") from None
    if not all(scale > 0 for scale in scales):
        raise argparse.ArgumentTypeError(f"factors must be positive, got {text!r}")
    return scales


def _arm_parser(commands, name: str, help: str, split: str, threads: int) -> argparse.ArgumentParser:
    """A subcommand about one arm's run: the arm, its split, threads, model folder and data."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument(
        "arm",
        nargs="?",
        choices=sorted({**ARMS, **RECIPE_VARIANTS}),
        help="an arm of ARMS or RECIPE_VARIANTS (or --recipe)",
    )
    parser.add_argument(
        "--recipe",
        choices=recipes.names(),
        default=None,
        help="a named recipe of hf_metaid.workflow.recipes, run as it is instead of an arm "
        f"(its arm: {RECIPE_ARM}NAME)",
    )
    parser.add_argument("--split", choices=("validation", "test"), default=split)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--work", type=Path, default=Path("runs/quality_budget"), help="where models are saved")
    parser.add_argument(
        "--data",
        default="beauty",
        help="'beauty', 'markov', 'markov-repeats', 'markov-large' (synthetic) or an interaction file",
    )
    return parser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runner = _arm_parser(commands, "run", "train (once) and evaluate one arm", "validation", 2)
    runner.add_argument("--max-steps", type=int, default=0, help="stop training early (a smoke run of the path)")
    runner.add_argument("--results", type=Path, default=RESULTS, help="where the arm's JSON goes")
    _arm_parser(commands, "seen", "add seen@k to an arm's JSON written before evaluation reported it", "test", 1)
    scanner = _arm_parser(
        commands, "calibration", "score more chain-prior factors on an arm's saved model", "validation", 1
    )
    scanner.add_argument("--scales", type=_scales, required=True, help="factors of the learned weights: 2,3,4,6")
    scanner.add_argument("--results", type=Path, default=RESULTS, help="where the arm's JSON is")
    commands.add_parser("table", help="write results/quality_budget.md")
    args = parser.parse_args()
    if args.command != "table":
        if (args.arm is None) == (args.recipe is None):
            parser.error("give an arm or --recipe NAME, not both or neither")
        args.arm = args.arm or RECIPE_ARM + args.recipe
    if args.command == "run":
        run(args.arm, args.split, args.threads, args.work, args.data, args.max_steps, args.results)
    elif args.command == "seen":
        backfill_seen(args.arm, args.split, args.threads, args.work, args.data)
    elif args.command == "calibration":
        calibration_scan(args.arm, args.scales, args.threads, args.work, args.data, args.results)
    else:
        table()


if __name__ == "__main__":
    main()
