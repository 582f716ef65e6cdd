"""A learned item-level reference: a factorised first-order Markov chain trained as long as the demo trains.

The counting references (``count_baselines.py``) count; this one learns, with the demo's optimiser budget: every item
gets an input vector e_i and an output vector u_j and bias b_j, and the next item after i scores ``e_i · u_j + b_j``
(a factorised Markov chain, the item-to-item half of FPMC), trained with full softmax cross-entropy on the training
transitions (consecutive pairs of each user's training part), AdamW, batches of 128, the demo's learning rate and
epochs. It shows what a small model that sees items as items learns in the demo's number of passes, next to the META
ID model, which sees an item as two shared tokens.

Usage:
    python benchmarks/learned_references.py --data beauty
    python benchmarks/learned_references.py --data markov
    python benchmarks/learned_references.py table      # writes results/learned_references.md from the JSON files
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import torch

import hf_metaid as hm
from benchmark_common import cpu_and_cores, write_report
from harness import PROTOCOLS, write_json
from hf_metaid.evaluation.metrics import ranking_metrics

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "learned_references"
TABLE = HERE / "results" / "learned_references.md"
PROMPT_RECIPE = hm.recipes.get("fast-prompt")  # its epochs and learning rate are the defaults here


def train_chain(pairs: torch.Tensor, num_items: int, dim: int, epochs: float, learning_rate: float, seed: int):
    """``(input vectors, output vectors, biases, steps, last loss)`` of the factorised chain."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.nn.Parameter(torch.randn(num_items, dim, generator=generator) * 0.1)
    outputs = torch.nn.Parameter(torch.zeros(num_items, dim))
    bias = torch.nn.Parameter(torch.zeros(num_items))
    optimiser = torch.optim.AdamW([inputs, outputs, bias], lr=learning_rate, weight_decay=0.0)
    steps = int(epochs * len(pairs) / 128)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = pairs[torch.randint(len(pairs), (128,), generator=generator)]
        loss = torch.nn.functional.cross_entropy(inputs[batch[:, 0]] @ outputs.T + bias, batch[:, 1])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return inputs.detach(), outputs.detach(), bias.detach(), steps, float(loss)


def evaluate(split, index: dict[str, int], inputs, outputs, bias, leave_out: bool) -> dict[str, float]:
    """HR/NDCG@5/10 of the chain's top 10 after each user's last item (history left out or kept)."""
    lists, targets = [], []
    with torch.no_grad():
        for row in split:
            history = [index[item] for item in row["history"]]
            scores = inputs[history[-1]] @ outputs.T + bias
            if leave_out:
                scores[history] = -torch.inf
            lists.append(scores.topk(10).indices.tolist())
            targets.append(index[row["target"]])
    return ranking_metrics(lists, targets, ks=(5, 10))


def run(data: str, dim: int, epochs: float, learning_rate: float, seed: int, threads: int) -> Path:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    interactions = hm.load_interactions(data)
    splits, names = hm.leave_one_out(interactions), hm.catalogue(interactions)
    index = {item: position for position, item in enumerate(names["items"])}
    pairs = [
        (index[a], index[b])
        for history in splits["validation"]["history"]  # = each user's training part
        for a, b in itertools.pairwise(history)
    ]
    started = time.perf_counter()
    inputs, outputs, bias, steps, loss = train_chain(torch.tensor(pairs), len(index), dim, epochs, learning_rate, seed)
    seconds = time.perf_counter() - started
    metrics = {
        f"{split} {protocol}": evaluate(splits[split], index, inputs, outputs, bias, leave_out)
        for split in ("validation", "test")
        for protocol, leave_out in PROTOCOLS
    }
    record = {
        "data": data,
        "dim": dim,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
        "steps": steps,
        "last_loss": loss,
        "train_seconds": seconds,
        "threads": threads,
        "cpu": cpu_and_cores(),
        "command": "python " + shlex.join(sys.argv),
        "metrics": metrics,
    }
    out = RESULTS / f"{Path(data).stem}.json"
    write_json(out, record)
    print(json.dumps({key: round(value["hr@10"], 4) for key, value in metrics.items()}))
    return out


def table() -> None:
    records = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"))]
    columns = ("validation kept", "test kept", "validation left out", "test left out")
    rows = [
        f"| {r['data']} | {r['dim']} | {r['epochs']} | {r['learning_rate']} | {r['steps']} | {r['train_seconds']:.0f} "
        + "".join(f"| {r['metrics'][c]['hr@10']:.4f} / {r['metrics'][c]['ndcg@10']:.4f} " for c in columns)
        + "|"
        for r in records
    ]
    lines = [
        "# A learned item-level reference: the factorised first-order Markov chain",
        "",
        "`benchmarks/learned_references.py` (its docstring says what it is). Each cell: HR@10 / NDCG@10, every "
        "user of the split, top 10 over all items. Trained with the demo's learning rate, batch and epochs on "
        f"the training transitions. CPU: {records[0]['cpu'] if records else cpu_and_cores()}.",
        "",
        "| data | dim | epochs | lr | steps | train s | " + " | ".join(columns) + " |",
        "|---|---:|---:|---:|---:|---:|---|---|---|---|",
        *rows,
    ]
    write_report(TABLE, lines, (r["command"] for r in records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", nargs="?", default="run", choices=("run", "table"))
    parser.add_argument("--data", default="beauty", help="'beauty', 'markov' or an interaction file")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=PROMPT_RECIPE.training.epochs)
    parser.add_argument("--learning-rate", type=float, default=PROMPT_RECIPE.training.learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.command == "table":
        table()
    else:
        run(args.data, args.dim, args.epochs, args.learning_rate, args.seed, args.threads)


if __name__ == "__main__":
    main()
