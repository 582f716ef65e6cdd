"""Does a trained model generalise from the history, or memorise its training users? Two checks on a saved model.

1. Training item against validation: the hit rate on each user's last *training* item, asked with the training items
   before it (a context the model was trained on), beside the hit rate on the validation item. A model that
   learned transitions scores alike on both; one that memorised its training sequences scores far higher on the
   first.
2. Own user against another user: the validation hit rate with each user's own ID in the prompt, and with the IDs
   shuffled among the users (same histories). A model that reads the history and not the user scores alike; one
   that leans on the user's ID drops.

Both on the first ``--users`` users of the split (history left out of the ranking, beam 10). One row per model is
appended to ``results/memorisation.md`` (with the command); the models are the folders ``quality_budget.py`` saves
under its ``--work`` folder.

Usage:
    python benchmarks/memorisation.py /tmp/qb/runs/dec-w20-e12-item/model --data beauty
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import datasets
import numpy as np
import torch

from benchmark_common import cpu_and_cores, write_report
from harness import write_json
from hf_metaid.evaluation.evaluator import evaluate_recommender
from hf_metaid.saving.inference_folder import load_for_inference
from hf_metaid.workflow.splitting import split_data

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "memorisation"
TABLE = HERE / "results" / "memorisation.md"


def hit_rate(model, tokenizer, users: list, histories: list[list[str]], targets: list[str]) -> float:
    """HR@10 with the history left out of the ranking, by the library's evaluation (as ``quality_budget.py``)."""
    rows = datasets.Dataset.from_dict({"user": users, "history": histories, "target": targets})
    return evaluate_recommender(model, tokenizer, rows, exclude_seen=True, progress=False)["hr@10"]


def check(folder: Path, data: str, users: int, seed: int) -> dict:
    """The two checks' hit rates for the model in ``folder`` (see the module docstring)."""
    splits, _ = split_data(data)
    model, tokenizer = load_for_inference(folder)
    rows = splits["validation"].select(range(min(users, splits["validation"].num_rows)))
    names, histories, targets = rows["user"][:], rows["history"][:], rows["target"][:]
    longer = [i for i, history in enumerate(histories) if len(history) >= 2]
    shuffled = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    return {
        "validation": hit_rate(model, tokenizer, names, histories, targets),
        "last training item": hit_rate(
            model,
            tokenizer,
            [names[i] for i in longer],
            [histories[i][:-1] for i in longer],
            [histories[i][-1] for i in longer],
        ),
        "validation, users shuffled": hit_rate(model, tokenizer, shuffled, histories, targets),
        "users": len(names),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a saved model folder")
    parser.add_argument("--data", default="beauty", help="the data the model was trained on")
    parser.add_argument("--users", type=int, default=6000, help="users of the validation split to ask")
    parser.add_argument("--seed", type=int, default=0, help="seed of the user shuffle")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    record = check(args.model, args.data, args.users, args.seed)
    record.update(
        {
            "model": args.model.parent.name,
            "data": args.data,
            "cpu": cpu_and_cores(),
            "command": "python " + shlex.join(sys.argv),
        }
    )
    write_json(RESULTS / f"{args.model.parent.name}.json", record)
    records = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    lines = [
        "# Memorisation checks: generalising from the history, or memorising the training users",
        "",
        "`benchmarks/memorisation.py` (its docstring says what each column means). HR@10, history left out, beam 10, "
        f"the first validation users of each data set. CPU: {records[0]['cpu']}.",
        "",
        "| model (quality_budget arm) | data | users | validation | last training item | validation, users shuffled |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {r['model']} | {r['data']} | {r['users']} | {r['validation']:.4f} | {r['last training item']:.4f} "
            f"| {r['validation, users shuffled']:.4f} |"
            for r in records
        ),
    ]
    write_report(TABLE, lines, [r["command"] for r in records])


if __name__ == "__main__":
    main()
