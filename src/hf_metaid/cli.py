"""The ``hf-metaid`` command: index | train | evaluate | recommend | demo.

Each subcommand is a thin layer over the Python API, prints a results table at the end, and turns user mistakes
(bad files, unknown ids, bad arguments) into a one-line error and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import MetaIDError
from .metrics import DEFAULT_KS


# ---------------------------------------------------------------------------------------------------- helpers
def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (floats with 4 decimals)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("cut-offs must be positive integers")
    return ks


def metrics_line(metrics: dict, ks: Sequence[int] = DEFAULT_KS) -> str:
    """The machine-readable summary: ``HR@5=… HR@10=… NDCG@5=… NDCG@10=…``."""
    parts = [f"HR@{k}={metrics[f'hr@{k}']:.4f}" for k in ks] + [f"NDCG@{k}={metrics[f'ndcg@{k}']:.4f}" for k in ks]
    return " ".join(parts)


def metrics_table(metrics: dict, ks: Sequence[int]) -> str:
    rows = [[f"@{k}", metrics[f"hr@{k}"], metrics[f"ndcg@{k}"], metrics[f"mrr@{k}"]] for k in ks]
    return format_table(["cut-off", "HR", "NDCG", "MRR"], rows)


def _load_splits(data: str):
    from .data import catalogue, leave_one_out, load_interactions

    interactions = load_interactions(data)
    return interactions, leave_one_out(interactions), catalogue(interactions)


# ------------------------------------------------------------------------------------------------------ index
def build_indexer(
    scheme: str, clusters: int, dim: int, seed: int, embedding: str, joint: bool, rank_by: str = "distance"
):
    from .indexing import MetaIDIndexer, RandomIndexer, SequentialIndexer

    if scheme == "metaid":
        return MetaIDIndexer(
            num_clusters=clusters, dim=dim, seed=seed, embedding=embedding, joint=joint, rank_by=rank_by
        )
    if scheme == "sequential":
        return SequentialIndexer(seed=seed)
    return RandomIndexer(seed=seed)


def run_index(args: argparse.Namespace) -> int:
    _, splits, names = _load_splits(args.data)
    started = time.perf_counter()
    indexer = build_indexer(
        args.scheme, args.clusters, args.dim, args.seed, args.embedding, not args.separate, args.rank_by
    )
    vocabulary = indexer.fit(splits["train"], catalogue=names)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vocabulary.save(out / "metaid_vocab.json")
    rows = [
        ["scheme", vocabulary.scheme],
        ["users", len(vocabulary.users)],
        ["items", len(vocabulary.items)],
        ["cluster tokens", vocabulary.num_clusters],
        ["rank tokens", vocabulary.num_ranks],
        ["new tokens", len(vocabulary.new_tokens)],
        ["fingerprint", vocabulary.fingerprint],
        ["seconds", f"{seconds:.1f}"],
        ["written", str(out / "metaid_vocab.json")],
    ]
    print(format_table(["vocabulary", "value"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------ train
def feed_forward_width(args: argparse.Namespace) -> int:
    """``--d-ff``, where 0 means twice ``--d-model``."""
    return args.d_ff or 2 * args.d_model


def build_model(args: argparse.Namespace, tokenizer):
    """The tiny T5 from ``--d-model/--d-ff/--layers/--dropout``, or ``--base`` (a T5 checkpoint) as it is."""
    from .configuration_metaid import tiny_t5_config
    from .modeling_metaid import MetaIDForConditionalGeneration

    if args.base == "tiny":
        encoder_layers, decoder_layers = args.layers
        config = tiny_t5_config(
            d_model=args.d_model,
            d_ff=feed_forward_width(args),
            d_kv=args.d_model // 4,
            num_layers=encoder_layers,
            num_decoder_layers=decoder_layers,
            dropout_rate=args.dropout,
        )
    else:
        config = args.base
    return MetaIDForConditionalGeneration.from_base(config, tokenizer, seed=args.seed, tree_softmax=args.tree_softmax)


def build_tokenizer(base: str, vocabulary):
    from .tokenization_metaid import MetaIDTokenizer

    return MetaIDTokenizer.from_base(None if base == "tiny" else base, vocabulary)


def use_bf16(choice: str) -> bool:
    """``auto``: bf16 mixed precision where the hardware runs it natively (a GPU with bf16, or a CPU with AMX);
    elsewhere bf16 is emulated and slower than float32."""
    import torch

    if choice != "auto":
        return choice == "on"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def load_templates(spec: str) -> dict:
    """``--templates``: a built-in set (``openp5``, ``compact``) or a JSON file ``{task: {"seen": [...], ...}}``."""
    from .prompt_templates import TEMPLATE_SETS, check_templates

    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise MetaIDError(f"--templates {spec!r}: not one of {', '.join(TEMPLATE_SETS)} and not a file")
    try:
        return check_templates(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError) as err:
        raise MetaIDError(f"{path}: bad templates file: {err}") from None


def train_model(args: argparse.Namespace, splits, vocabulary, out: Path):
    """Tokenizer + model + prompts + Trainer; returns ``(model, tokenizer, train_seconds, final_loss)``."""
    from .data.prompts import build_training_prompts
    from .prompt_templates import TEMPLATES
    from .saving import save_for_inference
    from .training import build_trainer, training_arguments

    templates = load_templates(args.templates)
    tokenizer = build_tokenizer(args.base, vocabulary)
    model = build_model(args, tokenizer)
    # Recorded in the saved config: evaluation and `recommend` then ask in the words the model learned.
    model.set_prompt_format(None if templates is TEMPLATES else templates, args.max_history)
    prompts = build_training_prompts(
        splits["train"],
        tokenizer,
        tasks=tuple(args.tasks.split(",")),
        templates=templates,
        max_history=args.max_history,
        seed=args.seed,
    )
    training_args = training_arguments(
        out / "checkpoints",
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps else -1,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        save_strategy="no",
        logging_steps=max(1, args.logging_steps),
        seed=args.seed,
        disable_tqdm=False,
        bf16=use_bf16(args.bf16),
    )
    trainer = build_trainer(model, tokenizer, prompts, training_args, lora=True if args.lora else None)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    save_for_inference(trainer, tokenizer, out)
    return trainer.model, tokenizer, seconds, result.training_loss


def run_train(args: argparse.Namespace) -> int:
    from .entity_vocabulary import EntityVocabulary

    _, splits, _ = _load_splits(args.data)
    vocabulary = EntityVocabulary.load(args.vocab)
    out = Path(args.out)
    _, _, seconds, loss = train_model(args, splits, vocabulary, out)
    rows = [["mode", "LoRA" if args.lora else "full"], ["train loss", loss], ["seconds", f"{seconds:.1f}"]]
    rows.append(["written", str(out)])
    print(format_table(["training", "value"], rows))
    return 0


# --------------------------------------------------------------------------------------------------- evaluate
def evaluate_folder(model, tokenizer, split, args: argparse.Namespace) -> dict:
    from .evaluation import evaluate_recommender

    return evaluate_recommender(
        model,
        tokenizer,
        split,
        ks=args.k,
        template=args.template,
        mode=args.mode,
        exclude_seen=args.exclude_seen,
        limit=args.limit,
        batch_size=args.batch_size,
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from .saving import load_for_inference

    model, tokenizer = load_for_inference(args.model)
    _, splits, _ = _load_splits(args.data)
    metrics = evaluate_folder(model, tokenizer, splits[args.split], args)
    print(metrics_table(metrics, args.k))
    users, invalid, seconds = int(metrics["num_users"]), metrics["invalid_rate"], metrics["seconds"]
    print(f"users={users} invalid_rate={invalid:.4f} seconds={seconds:.1f}")
    print(metrics_line(metrics, args.k))
    return 0


# -------------------------------------------------------------------------------------------------- recommend
def run_recommend(args: argparse.Namespace) -> int:
    from .saving import load_for_inference

    model, tokenizer = load_for_inference(args.model)
    history = [h for h in args.history.split(",") if h] if args.history else None
    recommendations = model.recommend(
        tokenizer, user=args.user, history=history, k=args.k, exclude_seen=args.exclude_seen, mode=args.mode
    )
    rows = [[rank + 1, item, score] for rank, (item, score) in enumerate(recommendations)]
    print(format_table(["rank", "item", "log-prob"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """Index → train → evaluate the full test split → save → example recommendations, on the embedded Beauty."""
    started = time.perf_counter()
    _, splits, names = _load_splits(args.data)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise MetaIDError(f"{out} is not empty; pass --overwrite or another --out")
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] indexing {len(names['users'])} users and {len(names['items'])} items ({args.embedding})", flush=True)
    indexer = build_indexer("metaid", args.clusters, args.dim, args.seed, args.embedding, True, args.rank_by)
    vocabulary = indexer.fit(splits["train"], catalogue=names)
    index_seconds = time.perf_counter() - started
    encoder_layers, decoder_layers = args.layers
    shape = f"d_model={args.d_model}, d_ff={feed_forward_width(args)}, {encoder_layers}+{decoder_layers} layers"
    print(f"[2/4] training a small T5 ({shape})", flush=True)
    model, tokenizer, train_seconds, loss = train_model(args, splits, vocabulary, out)
    ranking = "history items left out" if args.exclude_seen else "history items kept, the paper's protocol"
    print(f"[3/4] evaluating on the {args.split} split ({splits[args.split].num_rows} users; {ranking})", flush=True)
    metrics = evaluate_folder(model, tokenizer, splits[args.split], args)
    print("[4/4] example recommendations from the saved folder", flush=True)
    from .saving import load_for_inference

    reloaded, reloaded_tokenizer = load_for_inference(out)
    examples = splits["test"].select(range(3))
    for row in examples:
        recs = reloaded.recommend(
            reloaded_tokenizer, user=row["user"], history=row["history"], k=5, exclude_seen=args.exclude_seen
        )
        shown = ", ".join(item for item, _ in recs)
        print(f"  user {row['user']} (last items {', '.join(row['history'][-3:])}) → {shown}")
    total = time.perf_counter() - started
    summary = [
        ["vocabulary", f"{vocabulary.num_clusters} clusters, {len(vocabulary.new_tokens)} new tokens"],
        ["index seconds", f"{index_seconds:.1f}"],
        ["train seconds", f"{train_seconds:.1f}"],
        ["train loss", loss],
        ["eval seconds", f"{metrics['seconds']:.1f}"],
        ["total seconds", f"{total:.1f}"],
        ["model folder", str(out)],
    ]
    print(format_table(["demo", "value"], summary))
    print(metrics_table(metrics, args.k))
    (out / "demo_results.json").write_text(
        json.dumps({**metrics, "exclude_seen": args.exclude_seen, "total_seconds": total}, indent=2, sort_keys=True)
    )
    print(metrics_line(metrics, args.k))
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def _layers(text: str) -> tuple[int, int]:
    """``N`` (N encoder and N decoder layers) or ``E+D``."""
    parts = text.split("+")
    try:
        counts = [int(part) for part in parts]
    except ValueError:
        counts = []
    if len(counts) == 1:
        counts *= 2
    if len(counts) != 2 or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or E+D with positive integers, got {text!r}")
    return counts[0], counts[1]


def _add_training_options(
    parser: argparse.ArgumentParser,
    epochs: float,
    batch_size: int,
    lr: float,
    templates: str = "openp5",
    max_history: int = 10,
    warmup: int = 100,
    tree_softmax: bool = False,
    layers: str = "2",
    d_ff: int = 0,
) -> None:
    group = parser.add_argument_group("training")
    group.add_argument(
        "--base",
        default="tiny",
        help="'tiny' (small T5 from a config, offline) or a T5 checkpoint "
        "name/path such as t5-small (needs the Hub or a local copy)",
    )
    group.add_argument("--d-model", type=int, default=128, help="width of the tiny T5")
    group.add_argument(
        "--layers",
        type=_layers,
        default=_layers(layers),
        help="layers of the tiny T5: N (N encoder + N decoder) or E+D, e.g. 1+3",
    )
    group.add_argument("--d-ff", type=int, default=d_ff, help="feed-forward width of the tiny T5 (0: 2 x d_model)")
    group.add_argument("--epochs", type=float, default=epochs)
    group.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: use --epochs)")
    group.add_argument("--batch-size", type=int, default=batch_size)
    group.add_argument("--lr", type=float, default=lr)
    group.add_argument("--dropout", type=float, default=0.0, help="dropout of the tiny T5")
    group.add_argument("--warmup", type=int, default=warmup, help="warmup steps")
    group.add_argument("--tasks", default="sequential", help="comma-separated: sequential,direct")
    group.add_argument("--max-history", type=int, default=max_history, help="history items per prompt")
    group.add_argument(
        "--templates",
        default=templates,
        help="prompt templates: 'openp5' (5 seen + 1 unseen per task), 'compact' (one short template per task) "
        'or a JSON file {task: {"seen": [...], "unseen": [...]}}',
    )
    group.add_argument(
        "--tree-softmax",
        action=argparse.BooleanOptionalAction,
        default=tree_softmax,
        help="normalise each ID step over the tokens a real item can continue with (off: the paper's plain "
        "softmax over the vocabulary)",
    )
    group.add_argument("--lora", action="store_true", help="LoRA (new-token rows and F trained in full)")
    group.add_argument("--logging-steps", type=int, default=100)
    group.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bf16 mixed precision (auto: where the hardware runs it natively)",
    )
    group.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per core)")
    group.add_argument("--seed", type=int, default=0)


def _add_eval_options(parser: argparse.ArgumentParser, exclude_seen: bool = False) -> None:
    group = parser.add_argument_group("evaluation")
    group.add_argument("--split", choices=("test", "validation"), default="test")
    group.add_argument("--template", default="seen", help="'seen', 'unseen' or a template with {user}/{history}")
    group.add_argument("--mode", choices=("beam", "exact"), default="beam")
    group.add_argument("--k", type=_ks, default=DEFAULT_KS, help="cut-offs, e.g. 5,10")
    group.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=exclude_seen,
        help="leave the user's history items out of the ranking: right where a user meets an item once, as in "
        "Beauty (the paper's protocol keeps them)",
    )
    group.add_argument("--limit", type=int, default=None, help="evaluate only the first N users")
    group.add_argument("--eval-batch-size", dest="batch_size", type=int, default=128)


def _add_index_options(parser: argparse.ArgumentParser, embedding: str = "skipgram") -> None:
    group = parser.add_argument_group("indexing")
    group.add_argument("--clusters", type=int, default=100)
    group.add_argument("--dim", type=int, default=64)
    group.add_argument(
        "--embedding",
        choices=("skipgram", "spectral"),
        default=embedding,
        help="skipgram: meta-path walks + skip-gram (the paper's); spectral: truncated SVD of the interaction graph",
    )
    group.add_argument(
        "--rank-by",
        choices=("distance", "degree"),
        default="distance",
        help="order inside a cluster: distance to the centroid (the paper's) or interaction count, most first",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-metaid", description="META ID recommendation with Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_help = "interactions: a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL) or 'beauty' (embedded, default)"

    index = commands.add_parser("index", help="build an ID vocabulary from the training split")
    index.add_argument("data", nargs="?", default="beauty", help=data_help)
    index.add_argument("--out", required=True, help="folder for metaid_vocab.json")
    index.add_argument("--scheme", choices=("metaid", "sequential", "random"), default="metaid")
    index.add_argument("--separate", action="store_true", help="cluster users and items separately")
    index.add_argument("--seed", type=int, default=0)
    _add_index_options(index)
    index.set_defaults(func=run_index)

    train = commands.add_parser("train", help="fine-tune a model on the training prompts")
    train.add_argument("data", nargs="?", default="beauty", help=data_help)
    train.add_argument("--vocab", required=True, help="metaid_vocab.json written by 'hf-metaid index'")
    train.add_argument("--out", required=True, help="folder for the model (or adapter) and tokenizer")
    _add_training_options(train, epochs=2.0, batch_size=64, lr=2e-3)
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser("evaluate", help="full-ranking HR/NDCG/MRR of a saved model")
    evaluate.add_argument("model", help="folder written by 'hf-metaid train'")
    evaluate.add_argument("--data", default="beauty", help=data_help)
    _add_eval_options(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    recommend = commands.add_parser("recommend", help="top-k items for one user")
    recommend.add_argument("model", help="folder written by 'hf-metaid train'")
    recommend.add_argument("--user", default=None, help="raw user id (omit for a new user with --history)")
    recommend.add_argument("--history", default="", help="comma-separated raw item ids, oldest first")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--mode", choices=("beam", "exact"), default="beam")
    recommend.add_argument(
        "--exclude-seen", action=argparse.BooleanOptionalAction, default=False, help="leave the history items out"
    )
    recommend.set_defaults(func=run_recommend)

    demo = commands.add_parser("demo", help="the whole pipeline on the embedded Beauty data, offline")
    demo.add_argument("--data", default="beauty", help=data_help)
    demo.add_argument("--out", default="metaid-demo", help="folder for the trained model and tokenizer")
    demo.add_argument("--overwrite", action="store_true", help="reuse a non-empty --out folder")
    # Tuned for 2 CPU cores and 15 minutes on the validation split (benchmarks/results/demo.md): spectral IDs carry
    # more of the sequential signal than skip-gram ones at this budget (and take seconds), one encoder layer with
    # three decoder layers and a wide feed-forward learns more per second than 2+2 narrow ones, short prompts train
    # faster per step, the last 5 items beat the last 3 or 10 at equal time, and batches of 128 pass more prompts
    # per second than 64. 4.5 epochs keep the whole run near 12.5 minutes (5.5 took 14.5 on the wider model).
    # The ranking leaves each user's history out, as a shop does: Beauty has no repeated user-item pair, so a seen
    # item is never the answer, and the paper's protocol (--no-exclude-seen) spends list places on such items.
    _add_index_options(demo, embedding="spectral")
    _add_training_options(
        demo,
        epochs=4.5,
        batch_size=128,
        lr=4e-3,
        templates="compact",
        max_history=5,
        warmup=100,
        layers="1+3",
        d_ff=1024,
    )
    _add_eval_options(demo, exclude_seen=True)
    demo.set_defaults(func=run_demo)
    return parser


def _reexec_with_passive_threads() -> None:
    """Run the command again with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller chose a policy.

    OpenMP threads that wait by spinning make a small model's training step about twice as slow as one thread as
    soon as anything else runs on the cores; passive ones lose little there and keep most of the two-thread gain
    on an idle machine (benchmarks/results/thread_policy.md). The policy is read once, when torch loads its OpenMP
    runtime, which importing this package has already done, hence a fresh process.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.execv(sys.executable, [sys.executable, "-m", "hf_metaid.cli", *sys.argv[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        _reexec_with_passive_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (MetaIDError, OSError, ValueError) as err:
        message = str(err) or type(err).__name__
        print(f"hf-metaid {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
