"""The worker of the two-process training test (tests/training/test_training.py), launched with ``accelerate launch``.

    accelerate launch --multi_gpu --num_processes 2 ... tests/workers/accelerate_worker.py OUT_DIR 2

It trains tiny full, LoRA and tree-softmax models on one fixed full batch and writes what each rank saw.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

# Launched as a script, only this folder is on the path; the tiny-run helpers live in tests/conftest.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import quiet_args, tiny_model, tiny_setup
from hf_metaid.evaluation.evaluator import RecommendationEvaluator
from hf_metaid.training.trainer import build_trainer, lora_config

SAMPLES = 16


def distributed_worker(output_dir: str | os.PathLike, world_size: int) -> None:
    """Train full, LoRA and tree-softmax models on one fixed full batch; write losses, world size and parameters
    per rank, and for LoRA the recommendation metrics of an evaluation after training."""
    torch.set_num_threads(1)
    output_dir = Path(output_dir)
    split, tokenizer, train = tiny_setup(seed=1)
    train = train.select(range(SAMPLES))
    for mode in ("full", "lora", "tree"):
        args = quiet_args(
            output_dir / mode,
            max_steps=3,
            per_device_train_batch_size=SAMPLES // world_size,
            optim="sgd",  # plain SGD: a gradient scaled by the world size shows in the parameters
            # smaller steps for the tree softmax: at 0.05 its first steps amplify the float noise of splitting the
            # batch (other padding per rank) to ~1e-2 relative; one process with split batches drifts the same way
            learning_rate=0.02 if mode == "tree" else 0.05,
            use_cpu=True,
            seed=0,
        )
        model = tiny_model(tokenizer, seed=1)
        if mode == "tree":  # its item table is a buffer, which DDP broadcasts
            model.set_tree_softmax(tokenizer)
        lora = lora_config(model, dropout=0.0) if mode == "lora" else None  # no dropout: ranks draw other masks
        evaluator = RecommendationEvaluator(tokenizer, split["validation"], ks=(5,)) if mode == "lora" else None
        trainer = build_trainer(model, tokenizer, train, args, lora=lora, evaluator=evaluator)
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        initial = torch.cat([p.detach().flatten().double() for p in trainable])
        trainer.train()
        rank = trainer.args.process_index
        final = torch.cat([p.detach().flatten().double() for p in trainable])
        torch.save({"initial": initial, "final": final}, output_dir / f"{mode}-rank{rank}.pt")
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        record = {"world_size": trainer.args.world_size, "losses": losses, "rank": rank}
        if evaluator is not None:
            record["evaluation"] = trainer.evaluate()
        (output_dir / f"{mode}-rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    distributed_worker(sys.argv[1], int(sys.argv[2]))
