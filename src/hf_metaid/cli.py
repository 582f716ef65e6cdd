"""The ``hf-metaid`` command: index | train | extend | evaluate | recommend | demo | push.

Each subcommand parses its options into the settings of :mod:`hf_metaid.pipeline` (whose fields carry the help
texts), calls the pipeline or the public API, and prints a results table at the end. User mistakes (bad options,
files, folders and ids: every :class:`~hf_metaid.errors.MetaIDError`, and the file system's own errors) become one
line, ``hf-metaid <command>: error: ...``, and exit status 2; any other exception is a bug and keeps its traceback.
Commands that write refuse a non-empty ``--out`` unless ``--overwrite`` is given, and write it atomically
(:mod:`hf_metaid.output_folders`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from .config_arguments import add_config_arguments, config_from_arguments
from .errors import InvalidArgumentError, MetaIDError
from .evaluation import MIN_KNOWN_TARGETS
from .indexing import CollaborativeIndexerConfig, MetaIDIndexerConfig
from .metrics import DEFAULT_KS
from .output_folders import atomic_folder, check_output_folder, replace_file
from .pipeline import DEMO, SCHEMES, ModelSettings, Recipe, TrainingSettings
from .vocabulary_growth import DEFAULT_MIN_INTERACTIONS


# ---------------------------------------------------------------------------------------------------- printing
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


def metrics_line(metrics: dict, ks: Sequence[int] = DEFAULT_KS) -> str:
    """The machine-readable summary: ``HR@5=… HR@10=… NDCG@5=… NDCG@10=…``."""
    parts = [f"HR@{k}={metrics[f'hr@{k}']:.4f}" for k in ks] + [f"NDCG@{k}={metrics[f'ndcg@{k}']:.4f}" for k in ks]
    return " ".join(parts)


def metrics_table(metrics: dict, ks: Sequence[int]) -> str:
    rows = [[f"@{k}", metrics[f"hr@{k}"], metrics[f"ndcg@{k}"], metrics[f"mrr@{k}"]] for k in ks]
    return format_table(["cut-off", "HR", "NDCG", "MRR"], rows)


# ---------------------------------------------------------------------------------------------- option types
def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 5,10, got {text!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("cut-offs must be positive integers")
    return ks


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


def _int_from(minimum: int):
    """argparse ``type=``: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_from(1)
_non_negative_int = _int_from(0)


# ----------------------------------------------------------------------------------- settings <-> options
# The options each command offers, per settings class of hf_metaid.pipeline; type, default, rule and help text come
# from the fields (hf_metaid.config_arguments). The seed is one option for every stage, --layers has its own syntax.
INDEX_FIELDS = ("num_clusters", "dim", "embedding", "rank_by", "svd_precision")
COLLABORATIVE_FIELDS = ("num_groups", "leaf_size")
COLLABORATIVE_TITLE = "collaborative IDs (--scheme collaborative)"
MODEL_FIELDS = (
    "base",
    "d_model",
    "d_ff",
    "dropout",
    "tree_softmax",
    "item_output",
    "item_input",
    "item_loss",
    "item_loss_negatives",
    "repeat_bias",
    "alpha",
    "augment_decoder",
    "init_new_rows",
)
TRAINING_FIELDS = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "tasks",
    "max_history",
    "history_in_decoder",
    "templates",
    "lora",
    "logging_steps",
    "bf16",
)
MODEL_HELP = (
    "model folder written by 'hf-metaid train' (full or LoRA), or a Hub repository namespace/name holding one; "
    "a path that does not exist fails at once"
)
ALIASES = {"num_clusters": "--clusters", "learning_rate": "--lr", "warmup_steps": "--warmup"}


def _add_settings(parser: argparse.ArgumentParser, title: str, defaults: object, names: Sequence[str]) -> None:
    """Options for ``names`` of a settings object's class, with ``defaults``'s values as their defaults."""
    group = parser.add_argument_group(title)
    add_config_arguments(
        group,
        type(defaults),
        names,
        aliases={name: ALIASES[name] for name in names if name in ALIASES},
        defaults={name: getattr(defaults, name) for name in names},
    )


def _from_options(args: argparse.Namespace, current, names: Sequence[str], **fixed):
    """``current`` (a settings object) with the parsed values of the options ``names`` and the ``fixed`` fields."""
    kept = {f.name: getattr(current, f.name) for f in dataclasses.fields(current) if f.name not in (*names, *fixed)}
    return config_from_arguments(args, type(current), **kept, **fixed)


def _index_config(args: argparse.Namespace, preset: Recipe) -> MetaIDIndexerConfig | CollaborativeIndexerConfig:
    """The settings of ``--scheme``'s indexer: META ID's, or a baseline's (which take its seed and ``--dim``)."""
    config = _from_options(args, preset.index, INDEX_FIELDS, seed=args.seed, joint=not getattr(args, "separate", False))
    if args.scheme == "collaborative":
        return config_from_arguments(args, CollaborativeIndexerConfig, seed=config.seed, dim=config.dim)
    return config


def _model_and_training(args: argparse.Namespace, preset: Recipe) -> tuple[ModelSettings, TrainingSettings]:
    model = _from_options(args, preset.model, MODEL_FIELDS, layers=args.layers)
    return model, _from_options(args, preset.training, TRAINING_FIELDS, seed=args.seed)


# ------------------------------------------------------------------------------------------------------ index
def run_index(args: argparse.Namespace) -> int:
    from .pipeline import build_indexer, data_name, split_data
    from .vocabulary_hub import write_vocabulary_folder

    out = check_output_folder(args.out, args.overwrite)
    config = _index_config(args, Recipe())
    splits, names = split_data(args.data)
    started = time.perf_counter()
    vocabulary = build_indexer(args.scheme, config).fit(splits["train"], catalogue=names, source=data_name(args.data))
    seconds = time.perf_counter() - started
    # A vocabulary folder, ready for the Hub; the fit's times are printed, not written, so the same data and seed
    # give the same folder byte for byte.
    with atomic_folder(out, args.overwrite) as staging:
        write_vocabulary_folder(vocabulary, staging)
    rows = [
        ["scheme", vocabulary.scheme],
        ["users", len(vocabulary.users)],
        ["items", len(vocabulary.items)],
        ["cluster tokens", vocabulary.num_clusters],
        ["rank tokens", vocabulary.num_ranks],
        ["new tokens", len(vocabulary.new_tokens)],
        ["fingerprint", vocabulary.fingerprint],
        ["seconds", f"{seconds:.1f}"],
        ["written", f"{out} (vocabulary folder with its dataset card)"],
    ]
    print(format_table(["vocabulary", "value"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------ train
def _train_and_save(
    settings: tuple[ModelSettings, TrainingSettings], train_split, vocabulary, out: Path, overwrite: bool
):
    """The pipeline's training run, saved as one folder for inference. The Trainer's own folder is a scratch one:
    nothing is checkpointed, and ``out`` only appears once the saved folder is complete."""
    from .pipeline import train
    from .saving import save_for_inference

    with tempfile.TemporaryDirectory(prefix="hf-metaid-run-") as scratch:
        run = train(train_split, vocabulary, scratch, *settings)
        save_for_inference(run.trainer, run.tokenizer, out, overwrite=overwrite)
    return run


def _resume_and_save(folder: str, settings: TrainingSettings, train_split, out: Path, overwrite: bool):
    """A saved model trained further (a LoRA folder merged first), in its own prompt format, saved like a new one."""
    from .pipeline import fine_tune, load_for_training
    from .saving import save_for_inference

    model, tokenizer = load_for_training(folder)
    with tempfile.TemporaryDirectory(prefix="hf-metaid-run-") as scratch:
        run = fine_tune(model, tokenizer, train_split, scratch, settings)
        save_for_inference(run.trainer, run.tokenizer, out, overwrite=overwrite)
    return run


def _vocabulary_file(path: str) -> Path:
    """A vocabulary file, or a folder holding one (what ``index`` writes, or a model folder)."""
    from .tokenization_metaid import VOCAB_FILE

    return Path(path) / VOCAB_FILE if Path(path).is_dir() else Path(path)


def run_train(args: argparse.Namespace) -> int:
    from .entity_vocabulary import EntityVocabulary
    from .pipeline import split_data

    if (args.vocab is None) == (args.resume_from is None):
        raise InvalidArgumentError("give --vocab (a new model) or --resume-from (a saved one), not both or neither")
    out = check_output_folder(args.out, args.overwrite)
    settings = _model_and_training(args, Recipe())
    splits, _ = split_data(args.data)
    if args.resume_from is not None:
        run = _resume_and_save(args.resume_from, settings[1], splits["train"], out, args.overwrite)
    else:
        vocabulary = EntityVocabulary.from_pretrained(args.vocab)
        run = _train_and_save(settings, splits["train"], vocabulary, out, args.overwrite)
    rows = [["mode", "LoRA" if settings[1].lora else "full"], ["train loss", run.loss]]
    rows += [["seconds", f"{run.seconds:.1f}"], ["written", str(out)]]
    print(format_table(["training", "value"], rows))
    return 0


# ----------------------------------------------------------------------------------------------------- extend
def run_extend(args: argparse.Namespace) -> int:
    """IDs for the new users and items of NEW_DATA, every old ID kept: a grown vocabulary, or a grown model folder."""
    from .data import load_interactions
    from .entity_vocabulary import EntityVocabulary
    from .pipeline import extend_model, load_for_training
    from .saving import save_for_inference

    out = check_output_folder(args.out, args.overwrite)
    source = Path(args.source)
    is_model = (source / "config.json").is_file()
    if not is_model and not _vocabulary_file(args.source).is_file():
        raise InvalidArgumentError(f"{args.source}: neither a model folder nor a vocabulary file or folder")
    interactions = load_interactions(args.new_data, min_interactions=1)
    started = time.perf_counter()
    if is_model:
        model, tokenizer = load_for_training(source)
        parent = tokenizer.entity_vocabulary
        model, tokenizer = extend_model(model, tokenizer, interactions, args.min_interactions)
        vocabulary = tokenizer.entity_vocabulary
        seconds = time.perf_counter() - started
        save_for_inference(model, tokenizer, out, overwrite=args.overwrite)
    else:
        parent = EntityVocabulary.load(_vocabulary_file(args.source))
        vocabulary = parent.extend(interactions, min_interactions=args.min_interactions)
        seconds = time.perf_counter() - started
        with atomic_folder(out, args.overwrite) as staging:
            vocabulary.save(staging / "metaid_vocab.json")
    grown = vocabulary.metadata["extension"]
    rows = [
        ["users", f"{len(parent.users)} -> {len(vocabulary.users)}"],
        ["items", f"{len(parent.items)} -> {len(vocabulary.items)}"],
        ["cold-start", grown["cold_start"]],
        ["left out", f"{grown['left_out']['users']} users, {grown['left_out']['items']} items"],
        ["rank tokens", f"{parent.num_ranks} -> {vocabulary.num_ranks}"],
        ["fingerprint", f"{parent.fingerprint} -> {vocabulary.fingerprint}"],
        ["seconds", f"{seconds:.1f}"],
        ["written", str(out if is_model else out / "metaid_vocab.json")],
    ]
    print(format_table(["extension", "value"], rows))
    return 0


# --------------------------------------------------------------------------------------------------- evaluate
def evaluate_split(model, tokenizer, split, args: argparse.Namespace) -> dict:
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
        min_known_targets=0.0 if getattr(args, "force", False) else MIN_KNOWN_TARGETS,
    )


def evaluation_of(metrics: dict, args: argparse.Namespace) -> dict:
    """The card's record of an evaluation run with the command's protocol (:mod:`hf_metaid.model_card`)."""
    from .model_card import evaluation_record
    from .pipeline import data_name

    return evaluation_record(
        metrics,
        split=args.split,
        data=data_name(args.data),
        template=args.template,
        mode=args.mode,
        exclude_seen=bool(args.exclude_seen),
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from .model_card import add_evaluation
    from .pipeline import split_data
    from .saving import load_for_inference

    if args.save_to_card and not Path(args.model).is_dir():
        raise InvalidArgumentError(f"--save-to-card writes into a local model folder; {args.model} is not one")
    model, tokenizer = load_for_inference(args.model)
    splits, _ = split_data(args.data)
    metrics = evaluate_split(model, tokenizer, splits[args.split], args)
    if args.save_to_card:
        card = add_evaluation(args.model, evaluation_of(metrics, args))
    print(metrics_table(metrics, args.k))
    users, invalid, seconds = int(metrics["num_users"]), metrics["invalid_rate"], metrics["seconds"]
    known = f"known_users={int(metrics['known_users'])} known_targets={int(metrics['known_targets'])}"
    print(f"users={users} {known} invalid_rate={invalid:.4f} seconds={seconds:.1f}")
    print(metrics_line(metrics, args.k))
    if args.save_to_card:
        print(f"model card: {card}")
    return 0


# -------------------------------------------------------------------------------------------------- recommend
def run_recommend(args: argparse.Namespace) -> int:
    from .saving import load_for_inference

    history = [h.strip() for h in args.history.split(",") if h.strip()] or None
    if args.user is None and history is None:
        raise InvalidArgumentError("give --user, --history or both (--history alone: a user the model does not know)")
    model, tokenizer = load_for_inference(args.model)
    recommendations = model.recommend(
        tokenizer, user=args.user, history=history, k=args.k, exclude_seen=args.exclude_seen, mode=args.mode
    )
    rows = [[rank + 1, item, score] for rank, (item, score) in enumerate(recommendations)]
    print(format_table(["rank", "item", "log-prob"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """Index → train → evaluate the full test split → save → example recommendations, on the embedded Beauty."""
    from .model_card import add_evaluation
    from .pipeline import build_vocabulary, data_name, decide_exclude_seen, split_data
    from .saving import load_for_inference

    started = time.perf_counter()
    index_config = _index_config(args, DEMO)
    model_settings, training_settings = _model_and_training(args, DEMO)
    out = check_output_folder(args.out, args.overwrite)
    splits, names = split_data(args.data)
    how = index_config.embedding if args.scheme == "metaid" else f"{args.scheme} IDs"
    print(f"[1/4] indexing {len(names['users'])} users and {len(names['items'])} items ({how})", flush=True)
    vocabulary = build_vocabulary(splits["train"], names, index_config, scheme=args.scheme, source=data_name(args.data))
    index_seconds = time.perf_counter() - started
    encoder_layers, decoder_layers = model_settings.layers
    shape = (
        f"d_model={model_settings.d_model}, d_ff={model_settings.feed_forward_width}, "
        f"{encoder_layers}+{decoder_layers} layers"
    )
    print(f"[2/4] training a small T5 ({shape})", flush=True)
    run = _train_and_save((model_settings, training_settings), splits["train"], vocabulary, out, args.overwrite)
    if args.exclude_seen is None:
        args.exclude_seen, ranking = decide_exclude_seen(splits["train"])
    else:
        ranking = "history items left out" if args.exclude_seen else "history items kept, the paper's protocol"
        ranking += " (as asked)"
    print(f"[3/4] evaluating on the {args.split} split ({splits[args.split].num_rows} users; {ranking})", flush=True)
    metrics = evaluate_split(run.model, run.tokenizer, splits[args.split], args)
    add_evaluation(out, evaluation_of(metrics, args))  # the measured figures on the model card
    print("[4/4] example recommendations from the saved folder", flush=True)
    reloaded, reloaded_tokenizer = load_for_inference(out)
    for row in splits["test"].select(range(3)):
        recs = reloaded.recommend(
            reloaded_tokenizer, user=row["user"], history=row["history"], k=5, exclude_seen=args.exclude_seen
        )
        shown = ", ".join(item for item, _ in recs)
        print(f"  user {row['user']} (last items {', '.join(row['history'][-3:])}) → {shown}")
    total = time.perf_counter() - started
    summary = [
        ["vocabulary", f"{vocabulary.num_clusters} clusters, {len(vocabulary.new_tokens)} new tokens"],
        ["index seconds", f"{index_seconds:.1f}"],
        ["train seconds", f"{run.seconds:.1f}"],
        ["train loss", run.loss],
        ["eval seconds", f"{metrics['seconds']:.1f}"],
        ["total seconds", f"{total:.1f}"],
        ["model folder", str(out)],
    ]
    print(format_table(["demo", "value"], summary))
    print(metrics_table(metrics, args.k))
    results = {**metrics, "exclude_seen": args.exclude_seen, "total_seconds": total}
    replace_file(out / "demo_results.json", json.dumps(results, indent=2, sort_keys=True))  # whole or absent
    print(metrics_line(metrics, args.k))
    return 0


# ------------------------------------------------------------------------------------------------------- push
def run_push(args: argparse.Namespace) -> int:
    from .hub_push import push_model

    urls = push_model(
        args.model,
        args.repo_id,
        vocab_repo=args.vocab_repo,
        private=True if args.private else None,  # None: an existing repository keeps its visibility
        token=args.token,
        commit_message=args.commit_message,
        license=args.license,
    )
    rows = [["model", args.repo_id, urls["model"]]]
    if "vocabulary" in urls:
        rows.append(["vocabulary (dataset)", args.vocab_repo, urls["vocabulary"]])
    print(format_table(["pushed", "repository", "commit"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------ parser
def _add_training_options(parser: argparse.ArgumentParser, preset: Recipe) -> None:
    _add_settings(parser, "model", preset.model, MODEL_FIELDS)
    parser.add_argument(
        "--layers",
        type=_layers,
        default=preset.model.layers,
        help="layers of the tiny T5: N (N encoder + N decoder) or E+D, e.g. 1+3",
    )
    _add_settings(parser, "training", preset.training, TRAINING_FIELDS)
    parser.add_argument(
        "--threads",
        type=_non_negative_int,
        default=preset.threads,
        help="torch CPU threads (0: torch's default, one per core)",
    )


def _add_eval_options(parser: argparse.ArgumentParser, exclude_seen: bool | None = False) -> None:
    """The evaluation options; ``exclude_seen=None`` leaves the history's place in the ranking to the data."""
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
        "Beauty (the paper's protocol keeps them)"
        + (
            "; default: from the data (left out when no training user-item pair repeats)"
            if exclude_seen is None
            else ""
        ),
    )
    group.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N users")
    group.add_argument("--eval-batch-size", dest="batch_size", type=_positive_int, default=128)


def _add_scheme(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--scheme",
        choices=SCHEMES,
        default=default,
        help="ID scheme: metaid (the paper's), sequential or random (OpenP5's SID / RID: numbered entities in blocks), "
        "collaborative (OpenP5's CID: recursive spectral clustering of item co-occurrence; users in sequential "
        "blocks), independent (IID: one token per entity). The baselines read --seed and --dim of the indexing "
        "options; --clusters, --embedding, --rank-by and --svd-precision are META ID's (default: %(default)s)",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seed of every random choice (indexing and training)"
    )


def _add_output(parser: argparse.ArgumentParser, default: str | None, what: str) -> None:
    parser.add_argument("--out", required=default is None, default=default, help=f"folder for {what}")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it holds a folder hf-metaid wrote (the new folder is written beside it and swapped "
        "in when complete); without it a non-empty --out is refused",
    )


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line, ``hf-metaid <command>: error: ...``, like every other
    user mistake (argparse would print the usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hf-metaid", description="META ID recommendation with Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_help = (
        "interactions: a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL), 'beauty' (embedded, default), 'markov' "
        "(a synthetic log with a known best ranking) or 'markov-repeats' (the same, where users come back to items)"
    )
    defaults = Recipe()

    index = commands.add_parser("index", help="build an ID vocabulary from the training split")
    index.add_argument("data", nargs="?", default="beauty", help=data_help)
    _add_output(index, None, "metaid_vocab.json")
    _add_scheme(index, defaults.scheme)
    index.add_argument("--separate", action="store_true", help="cluster users and items separately")
    _add_seed(index)
    _add_settings(index, "indexing", defaults.index, INDEX_FIELDS)
    _add_settings(index, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    index.set_defaults(func=run_index)

    train = commands.add_parser("train", help="fine-tune a model on the training prompts")
    train.add_argument("data", nargs="?", default="beauty", help=data_help)
    train.add_argument(
        "--vocab",
        default=None,
        help="the ID vocabulary of a new model: the folder 'hf-metaid index' wrote, a metaid_vocab.json file, a model "
        "folder, or a Hub dataset repository namespace/name shared with EntityVocabulary.push_to_hub or "
        "'hf-metaid push'",
    )
    train.add_argument(
        "--resume-from",
        default=None,
        metavar="MODEL",
        help="train a saved model folder further instead (e.g. after 'hf-metaid extend'); a LoRA folder is merged "
        "into its base first, and --lora trains a fresh adapter. The prompt format is the model's own: --templates, "
        "--max-history and --history-in-decoder do not apply",
    )
    _add_output(train, None, "the model (or adapter) and tokenizer")
    _add_seed(train)
    _add_training_options(train, defaults)
    train.set_defaults(func=run_train)

    extend = commands.add_parser(
        "extend",
        help="give IDs to the new users and items of NEW_DATA, every existing ID kept (a grown vocabulary or model)",
    )
    extend.add_argument(
        "source", metavar="VOCAB_OR_MODEL", help="metaid_vocab.json (or its folder), or a model folder (full or LoRA)"
    )
    extend.add_argument(
        "new_data", metavar="NEW_DATA", help="the new interactions: a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL)"
    )
    _add_output(
        extend, None, "the grown metaid_vocab.json, or the grown model (a LoRA model is merged into a full one)"
    )
    extend.add_argument(
        "--min-interactions",
        type=_positive_int,
        default=DEFAULT_MIN_INTERACTIONS,
        help="rows a new user or item needs to be placed by its neighbours; fewer: the cold-start cluster",
    )
    extend.set_defaults(func=run_extend)

    evaluate = commands.add_parser("evaluate", help="full-ranking HR/NDCG/MRR of a saved model")
    evaluate.add_argument("model", help=MODEL_HELP)
    evaluate.add_argument("--data", default="beauty", help=data_help)
    _add_eval_options(evaluate)
    evaluate.add_argument(
        "--force",
        action="store_true",
        help=f"evaluate even when the model's vocabulary knows under {MIN_KNOWN_TARGETS * 100:g}%% of the split's "
        "target items (refused otherwise: that is other data than the model's, and its HR would read as a bad model)",
    )
    evaluate.add_argument(
        "--save-to-card",
        action="store_true",
        help="record the metrics and their protocol in the model folder (metaid_evaluation.json) and rewrite its "
        "model card (README.md) with them; a run under the same protocol replaces the earlier one",
    )
    evaluate.set_defaults(func=run_evaluate)

    recommend = commands.add_parser("recommend", help="top-k items for one user")
    recommend.add_argument("model", help=MODEL_HELP)
    recommend.add_argument("--user", default=None, help="raw user id (omit for a new user with --history)")
    recommend.add_argument("--history", default="", help="comma-separated raw item ids, oldest first")
    recommend.add_argument("--k", type=_positive_int, default=10)
    recommend.add_argument("--mode", choices=("beam", "exact"), default="beam")
    recommend.add_argument(
        "--exclude-seen", action=argparse.BooleanOptionalAction, default=False, help="leave the history items out"
    )
    recommend.set_defaults(func=run_recommend)

    demo = commands.add_parser("demo", help="the whole pipeline on the embedded Beauty data, offline")
    demo.add_argument("--data", default="beauty", help=data_help)
    _add_output(demo, "metaid-demo", "the trained model and tokenizer")
    _add_seed(demo)
    # The defaults are the DEMO recipe (hf_metaid.pipeline), chosen on the validation split.
    _add_scheme(demo, DEMO.scheme)
    _add_settings(demo, "indexing", DEMO.index, INDEX_FIELDS)
    _add_settings(demo, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    _add_training_options(demo, DEMO)
    _add_eval_options(demo, exclude_seen=DEMO.exclude_seen)
    demo.set_defaults(func=run_demo)

    push = commands.add_parser(
        "push", help="upload a model folder with its model card, and optionally its vocabulary as a dataset"
    )
    push.add_argument("model", help="local model folder written by 'hf-metaid train' or 'demo' (full or LoRA)")
    push.add_argument("repo_id", help="the model repository on the Hub, namespace/name (created if needed)")
    push.add_argument(
        "--vocab-repo",
        default=None,
        help="also push the model's ID vocabulary as this dataset repository (namespace/name); the two cards link "
        "each other",
    )
    push.add_argument("--private", action="store_true", help="create the repositories private")
    push.add_argument("--token", default=None, help="Hub token (default: the one 'hf auth login' stored, or HF_TOKEN)")
    push.add_argument("--commit-message", default=None, help="message of the model repository's commit")
    push.add_argument("--license", default="apache-2.0", help="license in the model card's metadata")
    push.set_defaults(func=run_push)
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
    from transformers.utils import logging as transformers_logging

    # Loading bars, and a deprecation PEFT triggers inside transformers that no user can act on, would come before
    # a one-line error on stderr.
    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (MetaIDError, OSError) as err:  # the user's mistakes and the file system's refusals, not bugs
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        print(f"hf-metaid {args.command}: error: {' '.join(lines) or type(err).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
