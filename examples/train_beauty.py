"""Train a META ID recommender on Amazon Beauty with the Python API, then report HR/NDCG@k on the test split.

The defaults run offline on a CPU in a few minutes: a tiny T5 built from a configuration, the offline word-level
base tokenizer, and the first 500 users. The paper's setting is ``--users 0 --base t5-small --epochs 10
--batch-size 2048 --templates-per-sample all`` on a GPU (t5-small must be available locally or from the Hub).

    python examples/train_beauty.py --users 300 --epochs 2 --output-dir runs/beauty
    python examples/train_beauty.py --resume runs/beauty/checkpoint-500 ...   # continue an interrupted run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import hf_metaid as hm
from hf_metaid.data import build_training_prompts
from hf_metaid.indexing import MetaIDIndexer, RandomIndexer
from hf_metaid.saving.inference_folder import save_for_inference
from hf_metaid.training.trainer import build_trainer, lora_config, training_arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="beauty", help="interactions file, or 'beauty' for the embedded data")
    parser.add_argument("--users", type=int, default=500, help="keep the first N users (0 = all)")
    parser.add_argument("--base", default="tiny", help="'tiny' (random tiny T5, offline) or a T5 name/path")
    parser.add_argument("--ids", choices=("metaid", "random"), default="metaid", help="how IDs are assigned")
    parser.add_argument("--num-clusters", type=int, default=100)
    parser.add_argument("--tasks", nargs="+", default=["sequential", "direct"])
    parser.add_argument("--templates-per-sample", default="1", help="an int or 'all'")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max-steps", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters + ID rows + F instead of everything")
    parser.add_argument("--eval-users", type=int, default=500, help="test users to evaluate (0 = all)")
    parser.add_argument("--output-dir", default="runs/beauty")
    parser.add_argument("--resume", default=None, help="checkpoint folder to resume from")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def first_users(interactions, count: int):
    """The rows of the first ``count`` users (rows are grouped by user, so this is a prefix)."""
    if count <= 0:
        return interactions
    users = interactions["user"][:]
    keep = list(dict.fromkeys(users))[:count]
    return interactions.select(range(len(users) - users[::-1].index(keep[-1])))


def make_vocabulary(args, split, names) -> hm.EntityVocabulary:
    """IDs from the training interactions only (never validation/test); unseen catalogue items get cold IDs."""
    if args.ids == "metaid":
        indexer = MetaIDIndexer(num_clusters=args.num_clusters, seed=args.seed)
    else:
        indexer = RandomIndexer(seed=args.seed)
    return indexer.fit(split["train"], catalogue=names)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    output = Path(args.output_dir)
    interactions = first_users(hm.load_interactions(args.data), args.users)
    split = hm.leave_one_out(interactions)
    names = hm.catalogue(interactions)
    print(f"{len(split['test'])} users, {len(names['items'])} items, {len(split['train'])} training interactions")

    start = time.perf_counter()
    vocabulary = make_vocabulary(args, split, names)
    tiny = args.base == "tiny"
    tokenizer = hm.MetaIDTokenizer.from_base(None if tiny else args.base, vocabulary)
    model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config() if tiny else args.base, tokenizer)
    print(f"{vocabulary!r} built in {time.perf_counter() - start:.1f}s")

    per_sample = args.templates_per_sample
    prompts = build_training_prompts(
        split["train"],
        tokenizer,
        tasks=tuple(args.tasks),
        templates_per_sample=per_sample if per_sample == "all" else int(per_sample),
        seed=args.seed,
    )
    print(f"{len(prompts)} training prompts, e.g. {prompts[0]['source']!r} -> {prompts[0]['target']!r}")

    training = training_arguments(
        output,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        logging_steps=20,
    )
    lora = lora_config(model) if args.lora else None
    trainer = build_trainer(model, tokenizer, prompts, training, lora=lora)
    trainer.train(resume_from_checkpoint=args.resume)
    folder = save_for_inference(trainer, tokenizer, output / "final", overwrite=True)  # a resumed run replaces it
    print(f"saved to {folder}")

    limit = args.eval_users if args.eval_users > 0 else None
    metrics = hm.evaluate_recommender(trainer.model, tokenizer, split["test"], template="unseen", limit=limit)
    print({name: round(value, 4) for name, value in metrics.items()})
    return metrics


if __name__ == "__main__":
    main()
