"""LoRA fine-tuning of a META ID model on one process or several (accelerate / torchrun, GPUs or CPU).

LoRA adapters on the attention projections, the new ID-token rows and the augmentation F are trained; every other
weight stays frozen. The result is one folder (adapter + tokenizer + base config, and the base's weights when it is
the random tiny T5, which no checkpoint names) that ``load_for_inference`` reads.

    python examples/lora_accelerate.py --use-cpu --max-steps 30
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/lora_accelerate.py --use-cpu --max-steps 30
    torchrun --nproc_per_node 2 examples/lora_accelerate.py --use-cpu --max-steps 30

On CPU, ``--use-cpu`` is what makes the processes train one model together (gloo); without it each process would
train on its own. ``accelerate launch --cpu --num_processes 2`` starts a single process: use ``--multi_gpu``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import hf_metaid as hm
from hf_metaid.data import build_training_prompts
from hf_metaid.saving.inference_folder import load_for_inference, save_for_inference
from hf_metaid.training.trainer import build_trainer, lora_config, training_arguments
from train_beauty import first_users, make_vocabulary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200, help="first N users of Beauty (0 = all)")
    parser.add_argument("--base", default="tiny", help="'tiny' (random tiny T5, offline) or a T5 name/path")
    parser.add_argument("--ids", choices=("metaid", "random"), default="random")
    parser.add_argument("--num-clusters", type=int, default=32)
    parser.add_argument("--r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--use-cpu", action="store_true", help="train on CPU processes (gloo) even if a GPU is there")
    parser.add_argument("--output-dir", default="runs/lora")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def base_model(args, tokenizer) -> hm.MetaIDForConditionalGeneration:
    """The frozen base: a checkpoint, or a random tiny T5 (seeded, so every process builds the same one; the saved
    folder carries its weights, since no checkpoint names it)."""
    if args.base != "tiny":
        return hm.MetaIDForConditionalGeneration.from_base(args.base, tokenizer)
    return hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(), tokenizer, seed=args.seed)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    interactions = first_users(hm.load_interactions(), args.users)
    split = hm.leave_one_out(interactions)
    vocabulary = make_vocabulary(args, split, hm.catalogue(interactions))
    tokenizer = hm.MetaIDTokenizer.from_base(None if args.base == "tiny" else args.base, vocabulary)
    training = training_arguments(
        args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        use_cpu=args.use_cpu or not torch.cuda.is_available(),
        logging_steps=10,
        save_strategy="no",
        seed=args.seed,
    )
    model = base_model(args, tokenizer)
    prompts = build_training_prompts(split["train"], tokenizer, seed=args.seed)
    trainer = build_trainer(model, tokenizer, prompts, training, lora=lora_config(model, r=args.r))
    if training.process_index == 0:
        trainer.model.print_trainable_parameters()
        print(f"world size {training.world_size}, {len(prompts)} prompts")
    trainer.train()

    # The run's own output folder: a rerun replaces the adapter it saved before.
    folder = save_for_inference(trainer, tokenizer, Path(args.output_dir) / "adapter", overwrite=True)
    if training.process_index == 0:
        reloaded, reloaded_tokenizer = load_for_inference(folder)
        row = split["test"][0]
        print(f"saved to {folder}; top-5 for user {row['user']}:")
        print(reloaded.recommend(reloaded_tokenizer, user=row["user"], history=row["history"], k=5))


if __name__ == "__main__":
    main()
