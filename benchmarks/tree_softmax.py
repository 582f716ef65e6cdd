"""The demo's model trained with the paper's softmax and with the tree softmax, side by side, on Beauty.

Why: a small T5 trained from scratch with a softmax over the whole vocabulary must first learn which rank tokens
exist under each cluster (a cluster x rank table) before it can rank items; the tree softmax takes that table from
the vocabulary (``MetaIDForConditionalGeneration.set_tree_softmax``). This script measures what that buys at equal
training steps: the validation loss of each ID step, both over the whole vocabulary and renormalised over the real
continuations (the distribution constrained decoding ranks by), and HR/NDCG with beam 10 on sampled validation
users (the test split stays untouched). Training is ``hf-metaid demo``'s own code path and defaults (compact prompt,
last 5 items, its batch size and learning rate, bf16 where native), cut to ``--steps``.

Run: ``python benchmarks/tree_softmax.py [--steps 2000 --users 5000]`` (about 6 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `hf-metaid demo` runs; read when torch loads OpenMP
import torch

import hf_metaid as hm
from hf_metaid.data.prompts import build_eval_prompts
from hf_metaid.evaluation.evaluator import evaluate_recommender
from hf_metaid.prompt_templates import resolve_template
from hf_metaid.training.collator import MetaIDDataCollator
from hf_metaid.workflow.schemes import build_vocabulary
from hf_metaid.workflow.training_run import train

RESULTS = Path(__file__).resolve().parent / "results" / "tree_softmax.md"
STEPS = ("cluster", "rank", "end")
PROMPT_RECIPE = hm.recipes.get("fast-prompt")  # the prompt-mode recipe this file was measured with


def step_losses(model, tokenizer, rows, max_history: int, batch_size: int = 256) -> dict[str, list[float]]:
    """Mean negative log-likelihood of each ID token of the targets: over the vocabulary, and among real items (the
    model's own tree softmax switched on for the measurement)."""
    template = resolve_template("sequential", "seen", model.prompt_templates)
    prompts = build_eval_prompts(rows, tokenizer, template=template, max_history=max_history)
    data = hm.tokenize_prompts(prompts, tokenizer)
    collate = MetaIDDataCollator(tokenizer)
    trained_with_tree = model.config.metaid_tree_softmax
    losses = {}
    model.eval()
    for name, tree in (("vocabulary", trained_with_tree), ("items", True)):
        model.set_tree_softmax(tokenizer, tree)
        total = torch.zeros(3, dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
                log_probs = model(**batch).logits.float().log_softmax(-1)
                picked = log_probs.gather(-1, batch["labels"][..., None]).squeeze(-1)[:, :3]
                total -= picked.double().sum(0)
        losses[name] = (total / len(data)).tolist()
    model.set_tree_softmax(tokenizer, trained_with_tree)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--users", type=int, default=5000, help="validation users sampled (seed 0)")
    args = parser.parse_args()

    data = hm.load_interactions()
    splits = hm.leave_one_out(data)
    demo = PROMPT_RECIPE.index
    settings = dataclasses.replace(PROMPT_RECIPE.training, max_steps=args.steps, logging_steps=500)
    vocabulary = build_vocabulary(splits["train"], hm.catalogue(data), demo)  # as the demo does
    rows = splits["validation"].shuffle(seed=0).select(range(min(args.users, len(splits["validation"]))))
    table = []
    for tree_softmax in (False, True):
        model_settings = dataclasses.replace(PROMPT_RECIPE.model, tree_softmax=tree_softmax)
        with tempfile.TemporaryDirectory() as folder:
            run = train(splits["train"], vocabulary, folder, model_settings, settings)
        model, tokenizer, seconds, loss = run.model, run.tokenizer, run.seconds, run.loss
        losses = step_losses(model, tokenizer, rows, model_settings.max_history)
        started = time.perf_counter()
        metrics = evaluate_recommender(model, tokenizer, rows, progress=False)
        evaluated = time.perf_counter() - started
        name = "tree softmax" if tree_softmax else "plain softmax (paper)"
        pairs = [f"{v:.3f} / {i:.3f}" for v, i in zip(losses["vocabulary"], losses["items"], strict=True)]
        table.append([name, f"{seconds:.0f}", f"{seconds / args.steps:.4f}", f"{loss:.3f}", *pairs[:2],
                      f"{metrics['hr@5']:.4f}", f"{metrics['hr@10']:.4f}", f"{metrics['ndcg@10']:.4f}",
                      f"{evaluated:.0f}"])  # fmt: skip
        print(" | ".join(table[-1]), flush=True)

    headers = ["objective", "train s", "s/step", "train loss", "val loss cluster (vocab / items)",
               "val loss rank (vocab / items)", "HR@5", "HR@10", "NDCG@10", "eval s"]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    report = "\n".join(
        [
            "# Tree softmax vs the paper's softmax (the demo's tiny T5 on Beauty)",
            "",
            f"Command: `python benchmarks/tree_softmax.py --steps {args.steps} --users {args.users}`. Both runs: "
            f"`hf-metaid demo`'s training defaults cut to {args.steps} steps (batch {settings.batch_size}, "
            f"lr {settings.learning_rate}), {demo.embedding} IDs (K={demo.num_clusters}, seed {demo.seed}); "
            "validation losses and "
            "beam-10 metrics on "
            f"{len(rows)} validation users sampled with seed 0. A loss "
            "'over items' renormalises each step over the tokens that continue a real item ID (what constrained "
            "decoding ranks by); the tree softmax's two columns are equal by construction.",
            "",
            *lines,
            "",
            f"Machine: {torch.get_num_threads()} torch threads; python {sys.version.split()[0]}, "
            f"torch {torch.__version__}.",
        ]
    )
    RESULTS.write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
