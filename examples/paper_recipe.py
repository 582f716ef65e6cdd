"""The paper's recipe for t5-small on Amazon Beauty, one command for one GPU or eight (or CPU processes).

META ID IDs (meta-path walks + skip-gram, K=100; ``--scheme`` trains a baseline ID scheme the same way), t5-small by
name, both OpenP5 tasks with every seen template (each training sample written with all of them, the authors' 20x
expansion), AdamW at lr 1e-3 with 100 warm-up steps and linear decay, no weight decay, 10 epochs, an effective batch
of 2,048 prompts whatever the number of processes (per-device batch x gradient accumulation x processes), the last
epoch's model evaluated on the full test split with the unseen templates and beam search over real items (the
paper's protocol: history items kept):

    accelerate launch examples/paper_recipe.py --output-dir runs/paper                      # one GPU
    accelerate launch --multi_gpu --num_processes 8 examples/paper_recipe.py --output-dir runs/paper   # eight

A dry run on a CPU, offline (tiny T5 from a configuration, 50 users, 5 steps), checks the whole path in seconds:

    python examples/paper_recipe.py --dry-run --output-dir runs/paper-dry

The paper reports HR@10 = 0.0753, NDCG@10 = 0.0432 for this setting (the authors ran fp16; here bf16 where the
hardware runs it natively, float32 elsewhere). This script writes what it measured, with the device and the time, to
``OUTPUT_DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

import hf_metaid as hm
from hf_metaid.indexing import MetaIDIndexerConfig
from hf_metaid.workflow.schemes import SCHEMES, build_vocabulary

EFFECTIVE_BATCH = 2048


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="beauty", help="interactions file, or 'beauty' for the embedded data")
    parser.add_argument("--base", default="t5-small", help="T5 checkpoint name or path")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--per-device-batch", type=int, default=256, help="prompts per device per step")
    parser.add_argument("--effective-batch", type=int, default=EFFECTIVE_BATCH)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=100, help="K of META ID's clustering")
    parser.add_argument(
        "--scheme",
        default="metaid",
        choices=SCHEMES,
        help="ID scheme: metaid (the paper's) or a baseline trained with the same recipe (benchmarks/quality.py)",
    )
    parser.add_argument("--output-dir", default="runs/paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dry-run", action="store_true", help="CPU check: tiny T5 from a config, 50 users, 5 steps, 10 test users"
    )
    return parser.parse_args(argv)


def accumulation_steps(args: argparse.Namespace) -> int:
    """Gradient accumulation that keeps ``--effective-batch`` for the number of processes the launcher started."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    return max(1, args.effective_batch // (args.per_device_batch * processes))


def load_data(args: argparse.Namespace):
    """The interactions the recipe trains on: ``--data``, or its first 50 users in a dry run."""
    interactions = hm.load_interactions(None if args.data == "beauty" else args.data)
    if args.dry_run:
        keep = set(list(dict.fromkeys(interactions["user"][:]))[:50])
        interactions = interactions.filter(lambda batch: [u in keep for u in batch["user"]], batched=True)
    return interactions


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    output = Path(args.output_dir)
    interactions = load_data(args)
    splits = hm.leave_one_out(interactions)
    index = MetaIDIndexerConfig(num_clusters=8 if args.dry_run else args.clusters, seed=args.seed)
    vocabulary = build_vocabulary(splits["train"], hm.catalogue(interactions), index, scheme=args.scheme)
    tokenizer = hm.MetaIDTokenizer.from_base(None if args.dry_run else args.base, vocabulary)
    base = hm.tiny_t5_config() if args.dry_run else args.base
    model = hm.MetaIDForConditionalGeneration.from_base(base, tokenizer, seed=args.seed)
    prompts = hm.build_training_prompts(splits["train"], tokenizer, templates_per_sample="all", seed=args.seed)

    per_device = 8 if args.dry_run else args.per_device_batch
    gpu = torch.cuda.is_available()
    training = hm.training_arguments(
        output,
        num_train_epochs=args.epochs,
        max_steps=5 if args.dry_run else -1,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=1 if args.dry_run else accumulation_steps(args),
        learning_rate=args.lr,
        warmup_steps=0 if args.dry_run else args.warmup,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        bf16="auto",
        logging_steps=1 if args.dry_run else 20,
        save_strategy="no",
        seed=args.seed,
        dataloader_num_workers=2 if gpu else 0,
    )
    trainer = hm.build_trainer(model, tokenizer, prompts, training)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    hm.save_for_inference(trainer, tokenizer, output / "model")
    if not trainer.is_world_process_zero():
        return {}
    test = splits["test"].select(range(10)) if args.dry_run else splits["test"]
    metrics = hm.evaluate_recommender(trainer.model, tokenizer, test, template="unseen", batch_size=256)
    report = {
        "metrics": metrics,
        "train_seconds": seconds,
        "train_loss": result.training_loss,
        "prompts": len(prompts),
        "effective_batch": per_device * training.gradient_accumulation_steps * training.world_size,
        "processes": training.world_size,
        "device": torch.cuda.get_device_name(0) if gpu else platform.processor() or platform.machine(),
        "settings": vars(args),
    }
    (output / "results.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    print(json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return report


if __name__ == "__main__":
    main()
