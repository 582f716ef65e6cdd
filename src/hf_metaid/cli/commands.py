"""The subcommands: each parses nothing, takes the parsed options, runs the workflow and prints its table."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ..errors import InvalidArgumentError
from ..evaluation.evaluator import MIN_KNOWN_TARGETS
from ..saving.output_folders import (
    atomic_file,
    atomic_folder,
    check_output_file,
    check_output_folder,
    check_writable,
    replace_file,
)
from ..vocabulary.card import users_with_ids
from ..vocabulary.growth import MIN_KNOWN_ITEMS
from ..workflow.settings import ModelSettings, TrainingSettings
from .settings_options import _data_options, _index_config, _model_and_training
from .tables import format_table, metrics_line, metrics_table


# ------------------------------------------------------------------------------------------------------ index
def run_index(args: argparse.Namespace) -> int:
    from ..vocabulary.hub import write_vocabulary_folder
    from ..workflow.schemes import build_indexer
    from ..workflow.splitting import data_name, split_data

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
        ["users", users_with_ids(vocabulary)],
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
    settings: tuple[ModelSettings, TrainingSettings],
    train_split,
    vocabulary,
    out: Path,
    overwrite: bool,
    calibration: tuple | None = None,
    **budget,
):
    """The pipeline's training run, saved as one folder for inference. The Trainer's own folder is a scratch one:
    nothing is checkpointed, and ``out`` only appears once the saved folder is complete. ``budget``: the time
    budget's start and reserve (:func:`~hf_metaid.workflow.training_run.train`); ``calibration``: the validation
    split and protocol the chain prior's weights are set on (:func:`_calibrate`)."""
    from ..saving.inference_folder import save_for_inference
    from ..workflow.training_run import train

    with tempfile.TemporaryDirectory(prefix="hf-metaid-run-") as scratch:
        run = train(train_split, vocabulary, scratch, *settings, **budget)
        _calibrate(run, calibration)
        save_for_inference(run.trainer, run.tokenizer, out, overwrite=overwrite)
    return run


def _calibrate(run, calibration: tuple | None) -> None:
    """Set the chain prior's weights on validation (:mod:`hf_metaid.evaluation.chain_calibration`), where the model
    has the prior and a validation split was given; print what was chosen."""
    from ..evaluation.chain_calibration import calibrate_chain_prior
    from ..training.peft_utils import unwrap

    if calibration is None or not getattr(unwrap(run.model).config, "metaid_chain_prior", 0):
        return
    split, protocol = calibration
    chosen = calibrate_chain_prior(run.model, run.tokenizer, split, **protocol)
    print(f"  {chosen.summary()}", flush=True)


def _train_further_and_save(
    folder: str,
    settings: TrainingSettings,
    train_split,
    out: Path,
    overwrite: bool,
    calibration: tuple | None = None,
    **budget,
):
    """A saved model trained further (a LoRA folder merged first, then trained in full, every weight, or with a fresh
    adapter under ``--lora``), in its own prompt format, saved like a new one."""
    from ..saving.inference_folder import save_for_inference
    from ..workflow.growth import load_for_training
    from ..workflow.training_run import fine_tune

    model, tokenizer = load_for_training(folder)
    with tempfile.TemporaryDirectory(prefix="hf-metaid-run-") as scratch:
        run = fine_tune(model, tokenizer, train_split, scratch, settings, **budget)
        _calibrate(run, calibration)
        save_for_inference(run.trainer, run.tokenizer, out, overwrite=overwrite)
    return run


def _steps(run, settings: TrainingSettings) -> str:
    """The steps the run trained, and where a time budget chose them, that budget."""
    steps = f"{run.trainer.state.global_step:,}"
    return steps + (
        f" (time budget {settings.time_budget:g} min)" if settings.time_budget and not settings.max_steps else ""
    )


def _vocabulary_file(path: str) -> Path:
    """A vocabulary file, or a folder holding one (what ``index`` writes, or a model folder)."""
    from ..tokenization_metaid import VOCAB_FILE

    return Path(path) / VOCAB_FILE if Path(path).is_dir() else Path(path)


def run_train(args: argparse.Namespace) -> int:
    from ..entity_vocabulary import EntityVocabulary
    from ..workflow.splitting import decide_exclude_seen, split_data

    started = getattr(args, "started", None) or time.perf_counter()  # a time budget counts from here
    if (args.vocab is None) == (args.start_from is None):
        raise InvalidArgumentError("give --vocab (a new model) or --start-from (a saved one), not both or neither")
    out = check_output_folder(args.out, args.overwrite)
    settings = _model_and_training(args)
    splits, _ = split_data(args.data, **_data_options(args))
    # The chain prior's weights are set on validation under the ranking the data call for (as evaluate decides it).
    calibration = (splits["validation"], {"exclude_seen": decide_exclude_seen(splits["train"])[0]})
    if args.start_from is not None:
        run = _train_further_and_save(
            args.start_from, settings[1], splits["train"], out, args.overwrite, calibration, budget_start=started
        )
    else:
        vocabulary = EntityVocabulary.from_pretrained(args.vocab)
        run = _train_and_save(
            settings, splits["train"], vocabulary, out, args.overwrite, calibration, budget_start=started
        )
    rows = [["recipe", args.recipe], ["mode", "LoRA" if settings[1].lora else "full"], ["train loss", run.loss]]
    rows += [["steps", _steps(run, settings[1])], ["seconds", f"{run.seconds:.1f}"], ["written", str(out)]]
    print(format_table(["training", "value"], rows))
    return 0


# ----------------------------------------------------------------------------------------------------- extend
def run_extend(args: argparse.Namespace) -> int:
    """IDs for the new users and items of NEW_DATA, every old ID kept: a grown vocabulary, or a grown model folder."""
    from ..data import load_interactions
    from ..entity_vocabulary import EntityVocabulary
    from ..errors import UnknownDataError
    from ..saving.inference_folder import save_for_inference
    from ..workflow.growth import extend_model, load_for_training
    from ..workflow.splitting import data_name

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
def _protocol(args: argparse.Namespace) -> dict:
    """The evaluation options of the command, as :func:`~hf_metaid.evaluation.evaluator.evaluate_recommender` takes
    them (the split and the known-targets rule aside)."""
    return {
        "ks": args.cutoffs,
        "template": args.template,
        "mode": args.mode,
        "exclude_seen": args.exclude_seen,
        "limit": args.limit,
        "batch_size": args.batch_size,
    }


def evaluate_split(model, tokenizer, split, args: argparse.Namespace) -> dict:
    from ..evaluation.evaluator import evaluate_recommender

    return evaluate_recommender(
        model,
        tokenizer,
        split,
        **_protocol(args),
        min_known_targets=0.0 if getattr(args, "force", False) else MIN_KNOWN_TARGETS,
    )


def evaluation_of(metrics: dict, args: argparse.Namespace) -> dict:
    """The card's record of an evaluation run with the command's protocol (:mod:`hf_metaid.saving.model_card`)."""
    from ..saving.model_card import evaluation_record
    from ..workflow.splitting import data_name

    return evaluation_record(
        metrics,
        split=args.split,
        data=data_name(args.data),
        template=args.template,
        mode=args.mode,
        exclude_seen=bool(args.exclude_seen),
    )


def run_evaluate(args: argparse.Namespace) -> int:
    from ..saving.inference_folder import load_for_inference
    from ..saving.model_card import CARD_FILE, add_evaluation, model_card
    from ..workflow.splitting import split_data

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
    from ..saving.inference_folder import load_for_inference

    model, tokenizer = load_for_inference(args.model)
    recommendations = model.recommend(
        tokenizer, user=args.user, history=history, k=args.k, exclude_seen=bool(args.exclude_seen), mode=args.mode
    )
    rows = [[rank + 1, item, score] for rank, (item, score) in enumerate(recommendations)]
    print(format_table(["rank", "item", "log-prob"], rows))
    return 0


def _recommend_every_user(args: argparse.Namespace) -> int:
    """:func:`~hf_metaid.workflow.recommendation_table.recommend_all` on every user of ``--data``, written whole to
    ``--out`` (checked before the model loads)."""
    from ..data import load_interactions
    from ..saving.inference_folder import load_for_inference
    from ..workflow.recommendation_table import recommend_all
    from ..workflow.splitting import decide_exclude_seen

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
    unknown = (
        f"{new} (not in the ID vocabulary: asked from the history items it knows)"
        if not vocabulary.items_only
        else "none: the vocabulary gives users no IDs (items only), every user is asked from the history items"
    )
    rows = [
        ["users", f"{users} in {args.data}, {len(served)} with recommendations"],
        ["new users", unknown],
        ["rows", f"{table.num_rows} (user, rank, item, score; the top {args.k} of each user)"],
        ["history", ranking],
        ["seconds", f"{seconds:.1f}"],
        ["written", str(out)],
    ]
    print(format_table(["recommendations", "value"], rows))
    return 0


# ------------------------------------------------------------------------------------------------------- demo
def peak_memory_gb() -> float:
    """The process's peak resident memory so far in GB (10^9 bytes), printed beside the demo's timings so that a run
    reports what it needed; ``nan`` where the platform does not count it (``resource`` is POSIX only)."""
    try:
        import resource
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def run_demo(args: argparse.Namespace) -> int:
    """Index → train → evaluate the full test split → save → example recommendations, on the embedded Beauty."""
    from ..evaluation.chain_calibration import CALIBRATION_USERS, CHAIN_SCALES
    from ..saving.inference_folder import load_for_inference
    from ..saving.model_card import add_evaluation
    from ..training.time_budget import evaluation_reserve
    from ..workflow.schemes import build_vocabulary
    from ..workflow.splitting import data_name, decide_exclude_seen, split_data

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
    if args.exclude_seen is None:
        args.exclude_seen, ranking = decide_exclude_seen(splits["train"])
    else:
        ranking = "history items left out" if args.exclude_seen else "history items kept, the paper's protocol"
        ranking += " (as asked, or as the recipe says)"
    print(f"[2/4] training a small T5 ({shape})", flush=True)
    # A time budget counts the whole demo: indexing before training, and the evaluation after it, whose time is
    # measured on the model in training (decoding a sample of the split's users) and kept.
    calibration = None
    if model_settings.chain_prior:  # its weights are set on validation, under the protocol of the evaluation
        calibration = (splits["validation"], {k: v for k, v in _protocol(args).items() if k not in ("ks", "limit")})
    extra = min(CALIBRATION_USERS, splits["validation"].num_rows) * len(CHAIN_SCALES) if calibration else 0
    budget = {
        "budget_start": getattr(args, "started", None) or started,
        "budget_reserve": evaluation_reserve(splits[args.split], extra_users=extra, **_protocol(args)),
    }
    run = _train_and_save(
        (model_settings, training_settings), splits["train"], vocabulary, out, args.overwrite, calibration, **budget
    )
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
        ["train steps", _steps(run, training_settings)],
        ["train loss", run.loss],
        ["eval seconds", f"{metrics['seconds']:.1f}"],
        ["total seconds", f"{total:.1f}"],
        ["peak memory GB", f"{peak_memory_gb():.2f}"],
        ["model folder", str(out)],
    ]
    print(format_table(["demo", "value"], summary))
    print(metrics_table(metrics, args.cutoffs))
    results = {**metrics, "exclude_seen": args.exclude_seen, "total_seconds": total, "peak_memory_gb": peak_memory_gb()}
    replace_file(out / "demo_results.json", json.dumps(results, indent=2, sort_keys=True))  # whole or absent
    print(metrics_line(metrics, args.cutoffs))
    return 0


# ------------------------------------------------------------------------------------------------------- push
def run_push(args: argparse.Namespace) -> int:
    from ..saving.hub_push import push_model

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
