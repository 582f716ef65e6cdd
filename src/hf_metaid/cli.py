"""The ``hf-metaid`` command: index | train | extend | evaluate | recommend | demo | push.

Each subcommand parses its options into the settings of :mod:`hf_metaid.pipeline` (whose fields carry the help
texts), calls the pipeline or the public API, and prints a results table at the end. ``index``, ``train`` and
``demo`` start from the named recipe ``--recipe`` gives (:mod:`hf_metaid.recipes`; ``fast`` unless asked), each
option given overriding its field. Every option has one spelling (the settings field's name where it sets one), and
every command that reads interactions takes them as ``--data``. User mistakes (bad options,
files, folders and ids: every :class:`~hf_metaid.errors.MetaIDError`, and the file system's own errors) become one
line, ``hf-metaid <command>: error: ...``, and exit status 2; any other exception is a bug and keeps its traceback.
Commands that write check their destination first (a write is tried there; a non-empty ``--out`` is refused unless
``--overwrite`` is given), write it atomically and clear what killed runs left beside it
(:mod:`hf_metaid.output_folders`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import recipes
from .config_arguments import add_config_arguments, config_from_arguments
from .data.interactions import DEFAULT_TIMESTAMP_COLUMN
from .data.screening import LEAVE_ONE_OUT_MINIMUM
from .errors import DataWarning, InvalidArgumentError, LeftoverWarning, MetaIDError
from .evaluation import MIN_KNOWN_TARGETS
from .indexing import CollaborativeIndexerConfig, MetaIDIndexerConfig
from .metrics import DEFAULT_KS
from .output_folders import (
    atomic_file,
    atomic_folder,
    check_output_file,
    check_output_folder,
    check_writable,
    replace_file,
)
from .pipeline import SCHEMES, ModelSettings, Recipe, TrainingSettings
from .vocabulary_growth import DEFAULT_MIN_INTERACTIONS, MIN_KNOWN_ITEMS


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
# Every model setting, the model's options (MetaIDConfig's) included, in ModelSettings' order; --layers has its own.
MODEL_FIELDS = tuple(field.name for field in dataclasses.fields(ModelSettings) if field.name != "layers")
TRAINING_FIELDS = (
    "epochs",
    "max_steps",
    "batch_size",
    "learning_rate",
    "warmup_steps",
    "tasks",
    "lora",
    "logging_steps",
    "bf16",
)
MODEL_HELP = (
    "model folder written by 'hf-metaid train' (full or LoRA), or a Hub repository namespace/name holding one; "
    "a path that does not exist fails at once"
)
DATA_HELP = (
    "interactions: a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL), 'beauty' (embedded), 'markov' (a synthetic "
    "log with a known best ranking) or 'markov-repeats' (the same, where users come back to items)"
)
# Each option has one spelling. Spellings the commands once took, with the one that means the same now: refused like
# any unknown word, with the new name in the error, where the command takes it.
RENAMED = {
    "--clusters": "--num-clusters",
    "--lr": "--learning-rate",
    "--warmup": "--warmup-steps",
    "--resume-from": "--start-from",  # not the Trainer's resume_from_checkpoint: a trained model to start from
    "--k": "--cutoffs",  # evaluate and demo: the cut-offs of the metrics; recommend's --k is the number of items
    "--min-interactions": "--min-neighbour-rows",  # extend: rows that place a new entity by its neighbours
}
# The help of an option whose default is the chosen recipe's: the default recipe's value as the example.
FROM_RECIPE = f"the recipe's; {recipes.DEFAULT}: {{value}}"


def _add_settings(
    parser: argparse.ArgumentParser, title: str, defaults: object, names: Sequence[str], stage: str | None = None
) -> None:
    """Options for ``names`` of a settings object's class. With ``stage`` (the :class:`Recipe` field the settings
    are: ``index``, ``model`` or ``training``), an option not given takes the value of the recipe ``--recipe`` names
    (see :class:`_Parser`) and its help shows the default recipe's, ``defaults``; without it ``defaults``'s values
    are the options' defaults."""
    group = parser.add_argument_group(title)
    add_config_arguments(
        group,
        type(defaults),
        names,
        defaults={name: getattr(defaults, name) for name in names},
        defaults_from=None if stage is None else FROM_RECIPE,
    )
    if stage is not None:
        for name in names:
            parser.from_recipe[f"{type(defaults).__name__}.{name}"] = _recipe_field(stage, name)


def _recipe_field(stage: str, name: str) -> Callable[[Recipe], object]:
    """The value of ``recipe.<stage>.<name>`` (``stage`` empty: ``recipe.<name>``) of a recipe given later."""
    return lambda recipe: getattr(getattr(recipe, stage) if stage else recipe, name)


def _from_options(args: argparse.Namespace, current, names: Sequence[str], **fixed):
    """``current`` (a settings object) with the parsed values of the options ``names`` and the ``fixed`` fields."""
    kept = {f.name: getattr(current, f.name) for f in dataclasses.fields(current) if f.name not in (*names, *fixed)}
    return config_from_arguments(args, type(current), **kept, **fixed)


def _index_config(args: argparse.Namespace) -> MetaIDIndexerConfig | CollaborativeIndexerConfig:
    """The settings of ``--scheme``'s indexer: META ID's (the recipe's, with the options given), or a baseline's
    (which take its seed and ``--dim``)."""
    preset = recipes.get(args.recipe).index
    seed = preset.seed if args.seed is None else args.seed
    joint = False if getattr(args, "separate", False) else preset.joint
    config = _from_options(args, preset, INDEX_FIELDS, seed=seed, joint=joint)
    if args.scheme == "collaborative":
        return config_from_arguments(args, CollaborativeIndexerConfig, seed=config.seed, dim=config.dim)
    return config


def _model_and_training(args: argparse.Namespace) -> tuple[ModelSettings, TrainingSettings]:
    """The model and training settings: the recipe's, with the options given."""
    preset = recipes.get(args.recipe)
    seed = preset.training.seed if args.seed is None else args.seed
    model = _from_options(args, preset.model, MODEL_FIELDS, layers=args.layers)
    return model, _from_options(args, preset.training, TRAINING_FIELDS, seed=seed)


def _data_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`~hf_metaid.load_interactions` that the data options give
    (:func:`_add_data_options`); a command that does not split the data has no ``--min-interactions`` of its own."""
    options = {
        "user_column": args.user_column,
        "item_column": args.item_column,
        "timestamp_column": args.time_column,
        "drop_duplicates": args.drop_duplicates,
    }
    if hasattr(args, "min_user_interactions"):
        options["min_interactions"] = args.min_user_interactions
    return options


# ------------------------------------------------------------------------------------------------------ index
def run_index(args: argparse.Namespace) -> int:
    from .pipeline import build_indexer, data_name, split_data
    from .vocabulary_hub import write_vocabulary_folder

    out = check_output_folder(args.out, args.overwrite)
    config = _index_config(args)
    splits, names = split_data(args.data, **_data_options(args))
    started = time.perf_counter()
    vocabulary = build_indexer(args.scheme, config).fit(splits["train"], catalogue=names, source=data_name(args.data))
    seconds = time.perf_counter() - started
    # A vocabulary folder, ready for the Hub; the fit's times are printed, not written, so the same data and seed
    # give the same folder byte for byte.
    with atomic_folder(out, args.overwrite) as staging:
        write_vocabulary_folder(vocabulary, staging)
    rows = [
        ["recipe", args.recipe],
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


def _train_further_and_save(folder: str, settings: TrainingSettings, train_split, out: Path, overwrite: bool):
    """A saved model trained further (a LoRA folder merged first, then trained in full, every weight, or with a fresh
    adapter under ``--lora``), in its own prompt format, saved like a new one."""
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

    if (args.vocab is None) == (args.start_from is None):
        raise InvalidArgumentError("give --vocab (a new model) or --start-from (a saved one), not both or neither")
    out = check_output_folder(args.out, args.overwrite)
    settings = _model_and_training(args)
    splits, _ = split_data(args.data, **_data_options(args))
    if args.start_from is not None:
        run = _train_further_and_save(args.start_from, settings[1], splits["train"], out, args.overwrite)
    else:
        vocabulary = EntityVocabulary.from_pretrained(args.vocab)
        run = _train_and_save(settings, splits["train"], vocabulary, out, args.overwrite)
    rows = [["recipe", args.recipe], ["mode", "LoRA" if settings[1].lora else "full"], ["train loss", run.loss]]
    rows += [["seconds", f"{run.seconds:.1f}"], ["written", str(out)]]
    print(format_table(["training", "value"], rows))
    return 0


# ----------------------------------------------------------------------------------------------------- extend
def run_extend(args: argparse.Namespace) -> int:
    """IDs for the new users and items of NEW_DATA, every old ID kept: a grown vocabulary, or a grown model folder."""
    from .data import load_interactions
    from .entity_vocabulary import EntityVocabulary
    from .errors import UnknownDataError
    from .pipeline import data_name, extend_model, load_for_training
    from .saving import save_for_inference

    out = check_output_folder(args.out, args.overwrite)
    source = Path(args.source)
    is_model = (source / "config.json").is_file()
    if not is_model and not _vocabulary_file(args.source).is_file():
        raise InvalidArgumentError(f"{args.source}: neither a model folder nor a vocabulary file or folder")
    interactions = load_interactions(args.data, **_data_options(args), min_interactions=1)  # every user
    if is_model:
        model, tokenizer = load_for_training(source)
        parent = tokenizer.entity_vocabulary
    else:
        parent = EntityVocabulary.load(_vocabulary_file(args.source))
    options = {
        "min_interactions": args.min_neighbour_rows,
        "min_known_items": 0.0 if args.force else MIN_KNOWN_ITEMS,  # other data than the vocabulary's: refused
        "source": data_name(args.data),
    }
    started = time.perf_counter()
    try:
        if is_model:
            model, tokenizer = extend_model(model, tokenizer, interactions, **options)
            vocabulary = tokenizer.entity_vocabulary
        else:
            vocabulary = parent.extend(interactions, **options)
    except UnknownDataError as err:
        raise UnknownDataError(f"{args.data}: {err}") from None
    seconds = time.perf_counter() - started
    if is_model:
        save_for_inference(model, tokenizer, out, overwrite=args.overwrite)
    else:
        with atomic_folder(out, args.overwrite) as staging:
            vocabulary.save(staging / "metaid_vocab.json")
    grown = vocabulary.metadata["extension"]
    data, cold_cluster = grown["data"], (vocabulary.metadata.get("cold_start") or {}).get("cluster")
    rows = [
        ["new data", f"{data['rows']} rows of {args.data}"],
        ["its users", f"{data['known_users']} known, {data['users'] - data['known_users']} new"],
        ["its items", f"{data['known_items']} known, {data['items'] - data['known_items']} new"],
        [
            "placed by neighbours",
            f"{grown['users'] - grown['cold_start_users']} users, {grown['items'] - grown['cold_start_items']} items "
            "(nearest existing cluster)",
        ],
        [
            "cold-start",
            f"{grown['cold_start_users']} users, {grown['cold_start_items']} items"
            + ("" if cold_cluster is None else f" (cluster {cold_cluster})"),
        ],
        ["left out", f"{grown['left_out']['users']} users, {grown['left_out']['items']} items"],
        ["users", f"{len(parent.users)} -> {len(vocabulary.users)}"],
        ["items", f"{len(parent.items)} -> {len(vocabulary.items)}"],
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
        ks=args.cutoffs,
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
    from .model_card import CARD_FILE, add_evaluation, model_card
    from .pipeline import split_data
    from .saving import load_for_inference

    if args.save_to_card and not Path(args.model).is_dir():
        raise InvalidArgumentError(f"--save-to-card writes into a local model folder; {args.model} is not one")
    if args.save_to_card:  # before the evaluation, not after it: the folder takes a write, its records read
        check_writable(args.model, CARD_FILE)
        model_card(args.model)
    model, tokenizer = load_for_inference(args.model)
    splits, _ = split_data(args.data, **_data_options(args))
    metrics = evaluate_split(model, tokenizer, splits[args.split], args)
    if args.save_to_card:
        card = add_evaluation(args.model, evaluation_of(metrics, args))
    print(metrics_table(metrics, args.cutoffs))
    users, invalid, seconds = int(metrics["num_users"]), metrics["invalid_rate"], metrics["seconds"]
    known = f"known_users={int(metrics['known_users'])} known_targets={int(metrics['known_targets'])}"
    print(f"users={users} {known} invalid_rate={invalid:.4f} seconds={seconds:.1f}")
    print(metrics_line(metrics, args.cutoffs))
    if args.save_to_card:
        print(f"model card: {card}")
    return 0


# -------------------------------------------------------------------------------------------------- recommend
# What `recommend --data ... --out FILE` writes, by the file's suffix.
TABLE_FORMATS = (".parquet", ".csv", ".jsonl")


def run_recommend(args: argparse.Namespace) -> int:
    """The top k of one user (``--user`` / ``--history``), printed, or of every user of ``--data``, written to
    ``--out``."""
    history = [h.strip() for h in args.history.split(",") if h.strip()] or None
    if args.data is not None:
        if args.user is not None or history is not None:
            raise InvalidArgumentError(
                "give --user/--history (one user) or --data (every user of the data, into --out), not both"
            )
        return _recommend_every_user(args)
    if args.out is not None:
        raise InvalidArgumentError("--out is the table of every user of --data: give --data too")
    if args.user is None and history is None:
        raise InvalidArgumentError(
            "give --user, --history or both (--history alone: a user the model does not know), or --data and --out "
            "for every user of a file"
        )
    from .saving import load_for_inference

    model, tokenizer = load_for_inference(args.model)
    recommendations = model.recommend(
        tokenizer, user=args.user, history=history, k=args.k, exclude_seen=bool(args.exclude_seen), mode=args.mode
    )
    rows = [[rank + 1, item, score] for rank, (item, score) in enumerate(recommendations)]
    print(format_table(["rank", "item", "log-prob"], rows))
    return 0


def _recommend_every_user(args: argparse.Namespace) -> int:
    """:func:`~hf_metaid.recommendation_table.recommend_all` on every user of ``--data``, written whole to ``--out``
    (checked before the model loads)."""
    from .data import load_interactions
    from .pipeline import decide_exclude_seen
    from .recommendation_table import recommend_all
    from .saving import load_for_inference

    if args.out is None:
        raise InvalidArgumentError(
            f"--data recommends for every user of the data: give --out FILE ({', '.join(TABLE_FORMATS)}) for the table"
        )
    suffix = Path(args.out).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise InvalidArgumentError(f"--out {args.out}: the table is written as {', '.join(TABLE_FORMATS)}; name one")
    out = check_output_file(args.out, args.overwrite)
    model, tokenizer = load_for_inference(args.model)
    interactions = load_interactions(args.data, **_data_options(args), min_interactions=1)  # every user
    if args.exclude_seen is None:
        exclude_seen, ranking = decide_exclude_seen(interactions)
    else:
        exclude_seen = args.exclude_seen
        ranking = "history items left out, as asked" if exclude_seen else "history items kept, as asked"
    started = time.perf_counter()
    table = recommend_all(model, tokenizer, interactions, k=args.k, exclude_seen=exclude_seen, mode=args.mode)
    seconds = time.perf_counter() - started
    with atomic_file(out, args.overwrite) as partial:
        {".parquet": table.to_parquet, ".csv": table.to_csv, ".jsonl": table.to_json}[suffix](str(partial))
    vocabulary = tokenizer.entity_vocabulary
    users, served = len(set(interactions["user"][:])), list(dict.fromkeys(table["user"][:]))
    new = sum(not vocabulary.has_user(user) for user in served)
    rows = [
        ["users", f"{users} in {args.data}, {len(served)} with recommendations"],
        ["new users", f"{new} (not in the ID vocabulary: asked from the history items it knows)"],
        ["rows", f"{table.num_rows} (user, rank, item, score; the top {args.k} of each user)"],
        ["history", ranking],
        ["seconds", f"{seconds:.1f}"],
        ["written", str(out)],
    ]
    print(format_table(["recommendations", "value"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------- demo
def run_demo(args: argparse.Namespace) -> int:
    """Index → train → evaluate the full test split → save → example recommendations, on the embedded Beauty."""
    from .model_card import add_evaluation
    from .pipeline import build_vocabulary, data_name, decide_exclude_seen, split_data
    from .saving import load_for_inference

    started = time.perf_counter()
    index_config = _index_config(args)
    model_settings, training_settings = _model_and_training(args)
    out = check_output_folder(args.out, args.overwrite)
    splits, names = split_data(args.data, **_data_options(args))
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
        ranking += " (as asked, or as the recipe says)"
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
        ["recipe", args.recipe],
        ["vocabulary", f"{vocabulary.num_clusters} clusters, {len(vocabulary.new_tokens)} new tokens"],
        ["index seconds", f"{index_seconds:.1f}"],
        ["train seconds", f"{run.seconds:.1f}"],
        ["train loss", run.loss],
        ["eval seconds", f"{metrics['seconds']:.1f}"],
        ["total seconds", f"{total:.1f}"],
        ["model folder", str(out)],
    ]
    print(format_table(["demo", "value"], summary))
    print(metrics_table(metrics, args.cutoffs))
    results = {**metrics, "exclude_seen": args.exclude_seen, "total_seconds": total}
    replace_file(out / "demo_results.json", json.dumps(results, indent=2, sort_keys=True))  # whole or absent
    print(metrics_line(metrics, args.cutoffs))
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
def _add_recipe(parser: argparse.ArgumentParser) -> None:
    """``--recipe``: the named recipe (:mod:`hf_metaid.recipes`) whose settings the options below default to."""
    listed = "; ".join(f"{name}: {recipes.entry(name).summary}" for name in recipes.names())
    parser.add_argument(
        "--recipe",
        choices=recipes.names(),
        default=recipes.DEFAULT,
        help="the settings every option below defaults to, each option given overriding its field "
        "(hf_metaid.recipes.describe(NAME) gives a recipe's measured figures): "
        + listed.replace("%", "%%")
        + " (default: %(default)s)",
    )


def _from_recipe(
    parser: argparse.ArgumentParser, *flags: str, value_of: Callable[[Recipe], object], group=None, **options
) -> None:
    """An option (in ``group`` of ``parser``, if given) whose default is the chosen recipe's, ``value_of(recipe)``,
    filled in after parsing (:class:`_Parser`); its help shows the default recipe's."""
    example = value_of(recipes.get(recipes.DEFAULT))
    shown = "+".join(map(str, example)) if isinstance(example, tuple) else example
    options["help"] += f" (default: {FROM_RECIPE.format(value=shown)})".replace("%", "%%")
    action = (group or parser).add_argument(*flags, default=argparse.SUPPRESS, **options)
    parser.from_recipe[action.dest] = value_of


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    preset = recipes.get(recipes.DEFAULT)
    _add_settings(parser, "model", preset.model, MODEL_FIELDS, stage="model")
    _from_recipe(
        parser,
        "--layers",
        type=_layers,
        value_of=_recipe_field("model", "layers"),
        help="layers of the tiny T5: N (N encoder + N decoder) or E+D, e.g. 1+3",
    )
    _add_settings(parser, "training", preset.training, TRAINING_FIELDS, stage="training")
    _from_recipe(
        parser,
        "--threads",
        type=_non_negative_int,
        value_of=_recipe_field("", "threads"),
        help="torch CPU threads (0: torch's default, one per core)",
    )


def _add_eval_options(parser: argparse.ArgumentParser, from_recipe: bool = False) -> None:
    """The evaluation options; ``from_recipe``: the history's place in the ranking is the recipe's unless asked
    (``None`` there: decided from the data)."""
    group = parser.add_argument_group("evaluation")
    group.add_argument("--split", choices=("test", "validation"), default="test")
    group.add_argument("--template", default="seen", help="'seen', 'unseen' or a template with {user}/{history}")
    group.add_argument("--mode", choices=("beam", "exact"), default="beam")
    group.add_argument(
        "--cutoffs",
        type=_ks,
        default=DEFAULT_KS,
        metavar="K,K,...",
        help="the cut-offs k of HR@k, NDCG@k and MRR@k, comma-separated (default: 5,10)",
    )
    exclude_help = (
        "leave the user's history items out of the ranking: right where a user meets an item once, as in Beauty (the "
        "paper's protocol keeps them)"
    )
    if from_recipe:
        _from_recipe(
            parser,
            "--exclude-seen",
            group=group,
            action=argparse.BooleanOptionalAction,
            value_of=_recipe_field("", "exclude_seen"),
            help=exclude_help + "; None: from the data (left out when no training user-item pair repeats)",
        )
    else:
        group.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=False, help=exclude_help)
    group.add_argument("--limit", type=_positive_int, default=None, help="evaluate only the first N users")
    group.add_argument("--eval-batch-size", dest="batch_size", type=_positive_int, default=128)


def _add_scheme(parser: argparse.ArgumentParser) -> None:
    _from_recipe(
        parser,
        "--scheme",
        choices=SCHEMES,
        value_of=_recipe_field("", "scheme"),
        help="ID scheme: metaid (the paper's), sequential or random (OpenP5's SID / RID: numbered entities in blocks), "
        "collaborative (OpenP5's CID: recursive spectral clustering of item co-occurrence; users in sequential "
        "blocks), independent (IID: one token per entity). The baselines read --seed and --dim of the indexing "
        "options; --num-clusters, --embedding, --rank-by and --svd-precision are META ID's",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    seed = recipes.get(recipes.DEFAULT).training.seed
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=None,
        help="seed of every random choice, indexing and training (default: the recipe's seed of each; "
        f"{recipes.DEFAULT}: {seed})",
    )


def _add_data_options(
    parser: argparse.ArgumentParser,
    split: bool = True,
    default: str | None = "beauty",
    required: bool = False,
    data_help: str = DATA_HELP,
) -> None:
    """The interaction data, ``--data`` on every command that reads some, and how the file is read (its columns,
    copied rows and, where it is split, users too short for leave-one-out), passed on by :func:`_data_options`."""
    group = parser.add_argument_group("data")
    if default is not None:
        data_help += " (default: %(default)s)"
    group.add_argument("--data", default=default, required=required, help=data_help)
    group.add_argument("--user-column", default="user", help="the user column of a CSV/TSV/Parquet/JSONL file")
    group.add_argument("--item-column", default="item", help="the item column of a CSV/TSV/Parquet/JSONL file")
    group.add_argument(
        "--time-column",
        default=DEFAULT_TIMESTAMP_COLUMN,
        help="the timestamp column, ties kept in file order (default: %(default)s, read where present; without one "
        "the file order is the time order)",
    )
    copies = group.add_mutually_exclusive_group()
    copies.add_argument(
        "--drop-duplicates",
        action="store_true",
        default=None,
        help="drop the copies of an interaction (same user, item and timestamp; without timestamps, the same item "
        "again right after itself); by default they are counted and kept, and a file where half the interactions "
        "have a copy is refused",
    )
    copies.add_argument(
        "--keep-duplicates", dest="drop_duplicates", action="store_false", default=None, help="keep the copies, counted"
    )
    if split:
        group.add_argument(
            "--min-interactions",
            dest="min_user_interactions",
            type=_int_from(LEAVE_ONE_OUT_MINIMUM),
            default=None,
            metavar="N",
            help=f"drop the users with fewer than N interactions (N >= {LEAVE_ONE_OUT_MINIMUM}: leave-one-out keeps "
            "the last two for validation and test), printing how many; by default such a user is refused",
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
    user mistake (argparse would print the usage first), and whose options may default to the recipe that
    ``--recipe`` names: ``from_recipe`` maps such an option's destination to its value in a recipe, filled in after
    parsing where the option was not given (such options have no default of their own). Each option is taken only as
    it is spelt (no abbreviations), and a word the command does not know is refused by the command itself, naming the
    spelling it takes now where the word is one it once took (:data:`RENAMED`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.from_recipe: dict[str, Callable[[Recipe], object]] = {}

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = [a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)]
            command = commands[0].get(getattr(namespace, "command", None), self) if commands else self
            command.error(f"unrecognized arguments: {' '.join(extras)}{_renaming_hints(command, extras)}")
        return namespace

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if self.from_recipe:
            recipe = recipes.get(namespace.recipe)
            for dest, value_of in self.from_recipe.items():
                if not hasattr(namespace, dest):
                    setattr(namespace, dest, value_of(recipe))
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _renaming_hints(parser: argparse.ArgumentParser, words: Sequence[str]) -> str:
    """`` (--lr is now --learning-rate; ...)`` for the unknown ``words`` that ``parser`` once took: a renamed option,
    or the data as a positional word where the command now takes ``--data``; empty where none is."""
    known, hints, after_option = parser._option_string_actions, [], False
    for word in words:
        flag = word.split("=", 1)[0]
        if word.startswith("-"):
            if RENAMED.get(flag) in known and flag not in known:
                hints.append(f"{flag} is now {RENAMED[flag]}")
            after_option = "=" not in word  # the next word is likely its value
        elif not after_option and "--data" in known:
            hints.append(f"the data is given as --data {word}")
        else:
            after_option = False
    return f" ({'; '.join(dict.fromkeys(hints))})" if hints else ""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hf-metaid", description="META ID recommendation with Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)
    fast = recipes.get(recipes.DEFAULT)  # the help shows the default recipe's values

    index = commands.add_parser("index", help="build an ID vocabulary from the training split")
    _add_data_options(index)
    _add_output(index, None, "metaid_vocab.json")
    _add_recipe(index)
    _add_scheme(index)
    index.add_argument("--separate", action="store_true", help="cluster users and items separately")
    _add_seed(index)
    _add_settings(index, "indexing", fast.index, INDEX_FIELDS, stage="index")
    _add_settings(index, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    index.set_defaults(func=run_index)

    train = commands.add_parser("train", help="fine-tune a model on the training prompts")
    _add_data_options(train)
    train.add_argument(
        "--vocab",
        default=None,
        help="the ID vocabulary of a new model: the folder 'hf-metaid index' wrote, a metaid_vocab.json file, a model "
        "folder, or a Hub dataset repository namespace/name shared with EntityVocabulary.push_to_hub or "
        "'hf-metaid push'",
    )
    train.add_argument(
        "--start-from",
        default=None,
        metavar="MODEL",
        help="instead of a new model, train a saved one further, from its weights (e.g. after 'hf-metaid extend'), "
        "with a fresh optimizer and schedule; a LoRA folder is merged into its base first, and --lora trains a fresh "
        "adapter. The model is its own: the model options (--templates, --max-history, --history-in-decoder, "
        "--item-output, ...) do not apply",
    )
    _add_output(train, None, "the model (or adapter) and tokenizer")
    _add_recipe(train)
    _add_seed(train)
    _add_training_options(train)
    train.set_defaults(func=run_train)

    extend = commands.add_parser(
        "extend",
        help="give IDs to the new users and items of NEW_DATA, every existing ID kept (a grown vocabulary or model)",
    )
    extend.add_argument(
        "source", metavar="VOCAB_OR_MODEL", help="metaid_vocab.json (or its folder), or a model folder (full or LoRA)"
    )
    # every new user is taken (no --min-interactions): --min-neighbour-rows is about placing them
    _add_data_options(
        extend,
        split=False,
        default=None,
        required=True,
        data_help="the new interactions (NEW_DATA): a file (P5/OpenP5 text, CSV, TSV, Parquet, JSONL)",
    )
    _add_output(
        extend, None, "the grown metaid_vocab.json, or the grown model (a LoRA model is merged into a full one)"
    )
    extend.add_argument(
        "--min-neighbour-rows",
        type=_positive_int,
        default=DEFAULT_MIN_INTERACTIONS,
        metavar="N",
        help="rows of NEW_DATA a new user or item needs to be placed by its neighbours (the Python argument "
        "min_interactions of EntityVocabulary.extend); fewer: the cold-start cluster (default: %(default)s)",
    )
    extend.add_argument(
        "--force",
        action="store_true",
        help=f"extend even when the vocabulary knows under {MIN_KNOWN_ITEMS * 100:g}%% of NEW_DATA's (distinct) items "
        "(refused otherwise, as evaluate refuses such a split: that is other data than the vocabulary's, whose new "
        "items would find no known neighbours and fill the cold-start cluster)",
    )
    extend.set_defaults(func=run_extend)

    evaluate = commands.add_parser("evaluate", help="full-ranking HR/NDCG/MRR of a saved model")
    evaluate.add_argument("model", help=MODEL_HELP)
    _add_data_options(evaluate)
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

    recommend = commands.add_parser(
        "recommend", help="the top k items of one user, or of every user of --data written to --out"
    )
    recommend.add_argument("model", help=MODEL_HELP)
    one = recommend.add_argument_group("one user, printed")
    one.add_argument("--user", default=None, help="raw user id (omit for a new user with --history)")
    one.add_argument("--history", default="", help="comma-separated raw item ids, oldest first")
    _add_data_options(
        recommend,
        split=False,
        default=None,
        data_help="instead of one user, every user of these interactions, each with all of their interactions as the "
        "history (users the model does not know: asked as new users from their known items, counted): a file "
        "(P5/OpenP5 text, CSV, TSV, Parquet, JSONL) or 'beauty', 'markov', 'markov-repeats'; the table goes to --out",
    )
    every = recommend.add_argument_group("every user of --data, written")
    every.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help=f"the table of every user's top k, one row per item: user, rank (1 = best), item, score (log-prob); "
        f"{', '.join(TABLE_FORMATS)} by the suffix, written whole or not at all",
    )
    every.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")
    recommend.add_argument("--k", type=_positive_int, default=10, help="items per user (default: %(default)s)")
    recommend.add_argument("--mode", choices=("beam", "exact"), default="beam")
    recommend.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave the user's history items out of its top k (default: for one user, kept; for --data, decided "
        "from the data as the demo decides: left out where no user meets an item twice)",
    )
    recommend.set_defaults(func=run_recommend)

    demo = commands.add_parser("demo", help="the whole pipeline on the embedded Beauty data, offline")
    _add_data_options(demo)
    _add_output(demo, "metaid-demo", "the trained model and tokenizer")
    _add_recipe(demo)
    _add_seed(demo)
    _add_scheme(demo)
    _add_settings(demo, "indexing", fast.index, INDEX_FIELDS, stage="index")
    _add_settings(demo, COLLABORATIVE_TITLE, CollaborativeIndexerConfig(), COLLABORATIVE_FIELDS)
    _add_training_options(demo)
    _add_eval_options(demo, from_recipe=True)
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


@contextlib.contextmanager
def _data_warnings_as_lines(command: str) -> Iterator[None]:
    """Print each :class:`~hf_metaid.errors.DataWarning` (copies, users dropped, columns left unread) as one line,
    ``hf-metaid <command>: warning: ...``, every time; other warnings show as Python shows them."""
    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        warnings.simplefilter("always", DataWarning)
        python_show = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, (DataWarning, LeftoverWarning)):  # and what killed runs left beside --out
                print(f"hf-metaid {command}: warning: {message}", file=sys.stderr, flush=True)
            else:
                python_show(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


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
        with _data_warnings_as_lines(args.command):
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
