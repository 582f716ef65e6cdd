"""A growing catalogue on Beauty: extend the vocabulary and the model with the last 10% of the interactions and
fine-tune briefly, against a full refit and retrain at the same number of training steps.

Why: refitting renumbers every ID, so every trained model and shared vocabulary breaks; ``EntityVocabulary.extend``
and ``extend_vocabulary`` keep every old ID and weight. This measures what that costs and buys: the extension's
time, old-ID stability (must be 100%), and HR@10 on the test users whose target is a new item, before and after
the fine-tune, with HR@10 on a sample of all test users beside it.

Time order: the embedded Beauty data carry no timestamps (P5's sequence file), so "time" is each user's own
sequence order: every training interaction (leave-one-out's train split) gets the pseudo-time position / length
of its user's training sequence, and the last 10% in that order are the new data. New items are the items of the new
data that the first 90% never show; every user already has older interactions, so there are no new users.

Arms (each writes ``results/catalogue_growth/<arm>.json`` and is skipped when that file exists, so a cut run
resumes where it stopped):

* ``grow``: IDs fitted on the first 90%, the demo's model trained ``--steps`` steps on it; then
  ``pipeline.extend_model`` with the last 10% (``min_interactions=1``: an item seen once is placed by its one
  user) and ``pipeline.fine_tune`` for ``--fine-tune-steps`` on the prompts whose target is new, plus as many old
  ones drawn at random (replay, so the old items are not forgotten).
* ``refit``: IDs fitted on the whole training split, the same model trained ``--steps + --fine-tune-steps`` steps
  on all of its prompts: the same number of steps, every ID renumbered.

Evaluation: beam 10, the demo's protocol (history items left out, as Beauty repeats no user-item pair), on every
test user whose target is a new item and on ``--users`` test users sampled with seed 0.

Run: ``python benchmarks/catalogue_growth.py`` (small settings: one thread, about 12 minutes); a fuller run:
``python benchmarks/catalogue_growth.py --steps 5400 --fine-tune-steps 600 --users 22363 --threads 2 --fresh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hf-metaid demo` runs; read when torch loads OpenMP
import datasets
import numpy as np
import torch

import hf_metaid as hm
from benchmark_common import cpu_model
from harness import run_arm
from hf_metaid.workflow.build import build_model, build_tokenizer
from hf_metaid.workflow.growth import extend_model
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.settings import load_templates
from hf_metaid.workflow.splitting import decide_exclude_seen, split_data
from hf_metaid.workflow.training_run import fine_tune

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "catalogue_growth.md"
ARMS = HERE / "results" / "catalogue_growth"
NEW_SHARE = 0.1
PROMPT_RECIPE = hm.recipes.get("fast-prompt")  # the prompt-mode recipe this file was measured with


def time_split(train: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(first 90%, last 10%)`` of the training rows in pseudo-time order (position / user's sequence length; ties
    in table order)."""
    users = train["user"][:]
    lengths = Counter(users)
    pseudo_time = np.array([(p + 1) / lengths[u] for u, p in zip(users, train["position"][:], strict=True)])
    order = np.lexsort((np.arange(len(users)), pseudo_time))
    cut = round((1 - NEW_SHARE) * len(order))
    return train.select(np.sort(order[:cut])), train.select(np.sort(order[cut:]))


def prompts_with_new_targets(train, new_rows, tokenizer, settings, seed: int) -> datasets.Dataset:
    """The sequential prompts of ``train`` whose target is a new interaction, plus as many old ones (seeded)."""
    templates = load_templates(settings.templates)
    prompts = hm.build_training_prompts(
        train, tokenizer, tasks=("sequential",), templates=templates, max_history=settings.max_history, seed=seed
    )
    new_pairs = set(zip(new_rows["user"][:], new_rows["position"][:], strict=True))
    flags = []  # build_training_prompts writes each user's positions 1.. in order, users in first-appearance order
    for user, items in hm.user_sequences(train).items():
        flags += [(user, position) in new_pairs for position in range(1, len(items))]
    flags = np.array(flags)
    if len(flags) != len(prompts):
        raise RuntimeError("the prompts do not follow the users' positions; the benchmark's selection is stale")
    new_index = np.flatnonzero(flags)
    old_index = np.random.default_rng(seed).choice(np.flatnonzero(~flags), size=len(new_index), replace=False)
    return prompts.select(np.sort(np.concatenate([new_index, old_index])))


def evaluate(model, tokenizer, rows, exclude_seen: bool) -> dict:
    model.eval()
    metrics = hm.evaluate_recommender(
        model, tokenizer, rows, ks=(10,), exclude_seen=exclude_seen, min_known_targets=0.0, batch_size=128
    )
    return {key: float(metrics[key]) for key in ("hr@10", "ndcg@10", "known_targets", "num_users", "seconds")}


def run_grow(splits, old_rows, new_rows, test_sets, args, exclude_seen) -> dict:
    index, model_settings = PROMPT_RECIPE.index, PROMPT_RECIPE.model
    training = dataclasses.replace(PROMPT_RECIPE.training, max_steps=args.steps, logging_steps=args.steps)
    started = time.perf_counter()
    vocabulary = build_vocabulary(old_rows, None, index)
    index_seconds = time.perf_counter() - started
    tokenizer = build_tokenizer(vocabulary)
    model = build_model(tokenizer, model_settings, seed=training.seed)  # in the recipe's prompt format
    result: dict = {"index_s": index_seconds, "clusters": vocabulary.num_clusters}
    with tempfile.TemporaryDirectory() as scratch:
        run = fine_tune(model, tokenizer, old_rows, scratch, training)
    result.update(train_s=run.seconds, train_loss=run.loss, steps=args.steps)
    for name, rows in test_sets.items():
        result[f"before_extend.{name}"] = evaluate(model, tokenizer, rows, exclude_seen)
    old_state = {key: value.clone() for key, value in model.state_dict().items()}
    started = time.perf_counter()
    model, grown = extend_model(model, tokenizer, new_rows, min_interactions=1)
    result["extend_s"] = time.perf_counter() - started
    vocabulary_grown = grown.entity_vocabulary
    same = sum(vocabulary_grown.user_code(u) == vocabulary.user_code(u) for u in vocabulary.users)
    same += sum(vocabulary_grown.item_code(i) == vocabulary.item_code(i) for i in vocabulary.items)
    result["old_ids_kept"] = same / len(vocabulary)
    state = model.state_dict()
    result["old_weights_kept"] = all(
        torch.equal(state[key][tuple(slice(0, n) for n in value.shape)], value) for key, value in old_state.items()
    )
    result["extension"] = vocabulary_grown.metadata["extension"]
    for name, rows in test_sets.items():
        result[f"after_extend.{name}"] = evaluate(model, grown, rows, exclude_seen)
    prompts = prompts_with_new_targets(splits["train"], new_rows, grown, model_settings, training.seed)
    tuning = dataclasses.replace(
        training, max_steps=args.fine_tune_steps, warmup_steps=0, logging_steps=args.fine_tune_steps
    )
    with tempfile.TemporaryDirectory() as scratch:
        run = fine_tune(model, grown, prompts, scratch, tuning)
    result.update(
        fine_tune_s=run.seconds,
        fine_tune_loss=run.loss,
        fine_tune_prompts=len(prompts),
        fine_tune_steps=args.fine_tune_steps,
    )
    for name, rows in test_sets.items():
        result[f"after_fine_tune.{name}"] = evaluate(run.model, grown, rows, exclude_seen)
    return result


def run_refit(splits, old_rows, new_rows, test_sets, args, exclude_seen) -> dict:
    steps = args.steps + args.fine_tune_steps
    training = dataclasses.replace(PROMPT_RECIPE.training, max_steps=steps, logging_steps=steps)
    started = time.perf_counter()
    vocabulary = build_vocabulary(splits["train"], None, PROMPT_RECIPE.index)
    result: dict = {"index_s": time.perf_counter() - started, "clusters": vocabulary.num_clusters, "steps": steps}
    tokenizer = build_tokenizer(vocabulary)
    model = build_model(tokenizer, PROMPT_RECIPE.model, seed=training.seed)  # in the recipe's prompt format
    with tempfile.TemporaryDirectory() as scratch:
        run = fine_tune(model, tokenizer, splits["train"], scratch, training)
    result.update(train_s=run.seconds, train_loss=run.loss)
    for name, rows in test_sets.items():
        result[f"final.{name}"] = evaluate(model, tokenizer, rows, exclude_seen)
    return result


def write_report(results: dict, args, facts: dict) -> str:
    grow, refit = results["grow"], results["refit"]

    def cell(result, key, name):
        metrics = result.get(f"{key}.{name}")
        return "-" if metrics is None else f"{metrics['hr@10']:.4f}"

    steps, tuning = grow["steps"], grow.get("fine_tune_steps", refit["steps"] - grow["steps"])  # as the arms ran
    rows = [
        ("grow: before extend", steps, grow, "before_extend"),
        ("grow: after extend", steps, grow, "after_extend"),
        ("grow: after fine-tune", steps + tuning, grow, "after_fine_tune"),
        ("refit + retrain", refit["steps"], refit, "final"),
    ]
    table = [
        "| model | training steps | HR@10 new-item targets | HR@10 sampled test users |",
        "|---|---|---|---|",
        *[f"| {label} | {steps} | {cell(r, key, 'new')} | {cell(r, key, 'sample')} |" for label, steps, r, key in rows],
    ]
    extension = grow["extension"]
    lines = [
        "# A growing catalogue on Beauty: extend + fine-tune against refit + retrain",
        "",
        "Command: `" + " ".join(["python benchmarks/catalogue_growth.py", *sys.argv[1:]]) + "`",
        "",
        f"Data: the embedded Beauty, leave-one-out; no timestamps, so each user's sequence order is the time order "
        f"(benchmark docstring). Training rows: {facts['old_rows']} old (first 90%), {facts['new_rows']} new; "
        f"{facts['new_items']} new items in {facts['new_item_rows']} of the new rows, no new users; "
        f"{facts['new_users_tested']} test users whose target is a new "
        f"item ('new-item targets'), {facts['sampled_users']} test users sampled with seed 0. Model: the demo's "
        f"(d_model 128, d_ff 1024, 1+3 layers, compact prompt, last 5 items, batch 128, lr 0.004), "
        f"{'history left out' if facts['exclude_seen'] else 'history kept'}, beam 10.",
        "",
        *table,
        "",
        f"- Extend (vocabulary + tokenizer + model): {grow['extend_s']:.2f} s; old IDs kept "
        f"{grow['old_ids_kept'] * 100:.1f}%, every old weight bit-identical: {grow['old_weights_kept']}; "
        f"{extension['items']} items placed ({extension['rounds']} round(s), {extension['new_rank_tokens']} new rank "
        f"tokens, {extension['cold_start']} cold-start, left out {extension['left_out']}).",
        f"- Fine-tune: {tuning} steps on {grow['fine_tune_prompts']} prompts (those with a new target "
        f"and as many old ones), {grow['fine_tune_s']:.0f} s; the first training {grow['train_s']:.0f} s; refit: "
        f"index {refit['index_s']:.1f} s + training {refit['train_s']:.0f} s.",
        f"- Machine: {facts['cpu']}, {args.threads} torch thread(s); python {platform.python_version()}, "
        f"torch {torch.__version__}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700, help="training steps before the catalogue grows")
    parser.add_argument("--fine-tune-steps", type=int, default=200, help="steps after it (the refit trains both)")
    parser.add_argument("--users", type=int, default=3000, help="test users sampled for the overall HR@10")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="run every arm again, ignoring saved arm results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits, _ = split_data("beauty")
    old_rows, new_rows = time_split(splits["train"])
    new_items = set(new_rows["item"][:]) - set(old_rows["item"][:])
    test = splits["test"]
    sample = np.sort(np.random.default_rng(0).choice(len(test), size=min(args.users, len(test)), replace=False))
    test_sets = {
        "new": test.filter(lambda row: row["target"] in new_items),
        "sample": test.select(sample),
    }
    exclude_seen, _ = decide_exclude_seen(splits["train"])
    results = {
        arm: run_arm(
            ARMS / f"{arm}.json",
            lambda run=run: run(splits, old_rows, new_rows, test_sets, args, exclude_seen),
            force=args.fresh,
        )
        for arm, run in (("grow", run_grow), ("refit", run_refit))
    }
    facts = {
        "old_rows": len(old_rows),
        "new_rows": len(new_rows),
        "new_items": len(new_items),
        "new_item_rows": sum(item in new_items for item in new_rows["item"][:]),
        "new_users_tested": len(test_sets["new"]),
        "sampled_users": len(test_sets["sample"]),
        "exclude_seen": exclude_seen,
        "cpu": cpu_model(),
    }
    report = write_report(results, args, facts)
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
