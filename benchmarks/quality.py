"""Every ID scheme and the counting references under one roof, on any data: one command regenerates the table.

Each scheme arm (META ID, and the baselines sequential, random, collaborative, independent) trains the same backbone
with the same recipe, budget and seed; only the ID vocabulary differs. Nothing is chosen on the test split: the
recipes come from validation (``hf_metaid.workflow.recipes``, ``benchmarks/results/demo.md``). Every arm
is evaluated on every user of the validation and the test split, HR@5/10 and NDCG@5/10 over all items (beam search
over real items), once with the user's history kept in the ranking (the paper's protocol) and once with it left out. The
``references`` arm computes the counting references on the same splits (popularity, the cluster chain over META ID's
clusters, the item Markov chain; ``count_baselines.py``).

Profiles:
- ``cpu``: the decoder recipe (the recipe ``decoder-k100``: the demo's ``fast`` before it took K = 200 and the
  all-items objective, which ``metaid-k200`` and ``quality_budget.md`` measured: spectral META ID, K = 100, a narrow
  T5 of 1+2 layers with the history in its decoder, 16 epochs; about 11 minutes of training per arm on one thread),
  plus the ablations (``ABLATIONS``: META ID with one thing changed, each against the arm it changes, with the
  paper's Diversity and Memorization Scores of every arm). ``--recipe NAME`` trains the scheme arms and the decoder
  ablations on another named recipe instead; their files then go to ``cpu-NAME`` beside ``cpu``.
- ``gpu``: the paper's recipe (``examples/paper_recipe.py``: t5-small by name, all seen templates, lr 1e-3, 10 epochs,
  effective batch 2,048) for every scheme; needs a GPU (and the Hub, or a local copy of t5-small).

Each arm writes ``ARM.json`` (command, settings, seconds, metrics, machine) and ``ARM.ranks.npz`` (each user's rank
of the target, for paired standard errors) under ``results/quality/DATA/PROFILE/``; a finished arm is skipped
unless ``--force``. The report (``benchmarks/RESULTS.md`` for Beauty, ``results/quality/DATA/RESULTS.md`` for other
data) and its chart ``quality.png`` are written from those files after every run, or alone with ``--report-only``.

Usage:
    python benchmarks/quality.py                                  # Beauty, cpu profile, every arm, then the report
    python benchmarks/quality.py --data my_interactions.csv       # the whole table on your own data
    python benchmarks/quality.py --arms metaid,references         # some arms only
    python benchmarks/quality.py --recipe fast                    # every scheme on the demo's recipe
    python benchmarks/quality.py --profile gpu                    # the paper's recipe for every scheme (GPU)
    python benchmarks/quality.py --report-only                    # rewrite the report from the arms' files
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads (thread_policy.md)

import numpy as np
import torch

from benchmark_common import cpu_and_cores, write_report
from count_baselines import counting_references
from harness import PROTOCOLS, evaluate_protocols, finished, train_and_save, write_json
from hf_metaid.data import leave_one_out
from hf_metaid.evaluation.id_quality import diversity_score, memorization_score
from hf_metaid.evaluation.metrics import DEFAULT_KS, MetricAccumulator, rank_of_target
from hf_metaid.saving.inference_folder import load_for_inference
from hf_metaid.workflow import recipes
from hf_metaid.workflow.recipes import Recipe
from hf_metaid.workflow.schemes import SCHEMES
from hf_metaid.workflow.splitting import data_name, split_data

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "quality"
BEAUTY_REPORT = HERE / "RESULTS.md"
DEFAULT_RECIPE = "decoder-k100"  # the recipe of the scheme arms (--recipe), whose results files stay comparable
# META ID with one thing changed (issue: the ablations): arm -> (what changed, the named recipe it starts from, None
# for --recipe's, changes). The prompt arms use the prompt recipe, whose encoder reads the history's ID tokens, so F
# acts there; under the decoder recipe the encoder reads an anonymous prompt without ID tokens and F has nothing to act
# on.
ABLATIONS: dict[str, tuple[str, str | None, dict[str, dict]]] = {
    "metaid-skipgram": (
        "skip-gram embedding (the paper's) instead of spectral",
        None,
        {"index": {"embedding": "skipgram"}},
    ),
    "metaid-k50": ("K = 50 clusters instead of 100", None, {"index": {"num_clusters": 50}}),
    "metaid-k200": ("K = 200 clusters instead of 100", None, {"index": {"num_clusters": 200}}),
    "metaid-separate": (
        "users and items clustered apart (K = 100 each) instead of together",
        None,
        {"index": {"joint": False}},
    ),
    "metaid-svd32": (
        "the spectral SVD in single precision (svd_precision float32, 3-5x faster on large graphs)",
        None,
        {"index": {"svd_precision": "float32"}},
    ),
    "metaid-centroid": (
        "new rows start from their vectors (centroid) instead of transformers' resize",
        None,
        {"model": {"init_new_rows": "centroid"}},
    ),
    "metaid-decoder-f": (
        "F on the decoder's ID tokens too, where this recipe reads the history (the research code: encoder only)",
        None,
        {"model": {"augment_decoder": True}},
    ),
    "prompt-metaid": (
        "the prompt recipe (fast-prompt: user ID and history in the encoder, where F acts)",
        "fast-prompt",
        {},
    ),
    "prompt-metaid-no-f": ("the prompt recipe without F (α = 0)", "fast-prompt", {"model": {"alpha": 0.0}}),
    "prompt-metaid-f-bug": (
        "prompt-metaid's model decoded without F, as the research code did (no new training)",
        "fast-prompt",
        {},
    ),
}
# Where an ablation arm is compared: the decoder arms against META ID, the prompt arms against the prompt recipe.
ABLATION_BASELINE = {arm: "prompt-metaid" if arm.startswith("prompt-metaid-") else "metaid" for arm in ABLATIONS}
ARMS = (*SCHEMES, "references", *ABLATIONS)
SPLITS = ("validation", "test")
METRICS = ("hr@5", "hr@10", "ndcg@5", "ndcg@10")
TOP = max(DEFAULT_KS)
SCHEME_NAMES = {
    "metaid": "META ID",
    "sequential": "sequential (SID)",
    "random": "random (RID)",
    "collaborative": "collaborative (CID)",
    "independent": "independent (IID)",
}
# Published figures on Beauty (HR@10 / NDCG@10): quoted, never measured here (../notes: field-lessons.md).
PUBLISHED = (
    ("META ID, t5-small", "0.0753 / 0.0432", "the META ID paper (ICML 2025), history kept"),
    ("CID (OpenP5), t5-small", "0.0507 / 0.0281", "the META ID paper's table"),
    ("SID (OpenP5), t5-small", "0.0609 / —", "the META ID paper's table"),
    ("RID (OpenP5), t5-small", "0.0479 / 0.0277", "the META ID paper's table"),
    ("TIGER", "0.0648 / 0.0384", "TIGER paper, as quoted in the eSASRec benchmark README"),
    ("SASRec, full cross-entropy", "0.0851 / 0.0421", "phonism/genrec README (their runs)"),
    ("eSASRec", "0.0928 / 0.0523", "blondered/transformer_benchmark README"),
)


# ----------------------------------------------------------------------------------------------------- arms
def cpu_recipe(arm: str, args: argparse.Namespace) -> Recipe:
    """The recipe of a scheme arm (the decoder recipe) or an ablation arm (its base with its change), with the
    small-data overrides of the command line (recorded in the JSON)."""
    _, base_name, changes = ABLATIONS.get(arm, ("", None, {}))
    base = recipes.get(base_name or args.recipe)
    index = dataclasses.replace(base.index, **changes.get("index", {}))
    if args.clusters is not None and "num_clusters" not in changes.get("index", {}):
        index = dataclasses.replace(index, num_clusters=args.clusters)
    model = dataclasses.replace(base.model, **changes.get("model", {}))
    if args.d_model is not None or args.d_ff is not None:
        model = dataclasses.replace(model, d_model=args.d_model or model.d_model, d_ff=args.d_ff or model.d_ff)
    training = {"max_steps": args.max_steps or 0}
    if args.batch_size is not None:
        training["batch_size"] = args.batch_size
    scheme = arm if arm in SCHEMES else "metaid"
    return dataclasses.replace(
        base, scheme=scheme, index=index, model=model, training=dataclasses.replace(base.training, **training)
    )


def evaluate_all(model, tokenizer, splits, template: str, limit: int | None) -> tuple[dict, dict]:
    """Metrics and per-user target ranks of every split x protocol."""
    metrics, ranks = {}, {}
    for split in SPLITS:
        accumulators = {protocol: MetricAccumulator(ks=DEFAULT_KS) for protocol, _ in PROTOCOLS}
        found = evaluate_protocols(model, tokenizer, splits[split], accumulators, template=template, limit=limit)
        for protocol, accumulator in accumulators.items():
            metrics.setdefault(split, {})[protocol] = {name: found[protocol][name] for name in (*METRICS, "num_users")}
            ranks[f"{split}|{protocol}"] = accumulator.target_ranks().astype(np.int8)
    return metrics, ranks


def run_scheme_cpu(arm: str, args: argparse.Namespace, work: Path) -> tuple[dict, dict]:
    recipe = cpu_recipe(arm, args)
    splits, names = split_data(args.data)
    facts = train_and_save(recipe, splits, names, work / arm / "model", work / arm, source=data_name(args.data))
    model, tokenizer = load_for_inference(work / arm / "model")
    started = time.perf_counter()
    metrics, ranks = evaluate_all(model, tokenizer, splits, "seen", args.limit)
    record = {
        "settings": dataclasses.asdict(recipe),
        **facts,
        "eval_seconds": time.perf_counter() - started,
        "new_tokens": model.config.metaid_num_new_tokens,
        "metrics": metrics,
        "id_scores": id_scores(model, tokenizer, splits["train"]),
    }
    return record, ranks


def run_generation_bug(arm: str, args: argparse.Namespace, work: Path) -> tuple[dict, dict]:
    """Evaluate the trained model of the F arm as the research code decoded it: F in training, not in generation."""
    trained = "prompt-metaid"
    folder = work / trained / "model"
    if not folder.is_dir():
        raise SystemExit(f"{arm} decodes {trained}'s model, which is not under {folder}: run --arms {trained} first")
    model, tokenizer = load_for_inference(folder)
    model.config.metaid_augment_generation = False
    splits, _ = split_data(args.data)
    started = time.perf_counter()
    metrics, ranks = evaluate_all(model, tokenizer, splits, "seen", args.limit)
    record = {
        "settings": dataclasses.asdict(cpu_recipe(arm, args)),
        "model_of": trained,
        "eval_seconds": time.perf_counter() - started,
        "metrics": metrics,
    }
    with model.encoder.augmentation_disabled():  # the IDs as this decoding reads them
        record["id_scores"] = id_scores(model, tokenizer, splits["train"])
    return record, ranks


def item_read_vectors(model, tokenizer) -> np.ndarray:
    """Each item's ID as the model reads it in a history: the mean over its ID tokens of the input vectors of the
    stack that reads the history (with F in the encoder, the item's own input vector where the model has one)."""
    items = tokenizer.entity_vocabulary.items
    ids = torch.tensor([tokenizer.item_token_ids(item) for item in items])
    reader = model.decoder if model.config.metaid_history_in_decoder else model.encoder
    with torch.no_grad():
        if hasattr(reader, "input_embeddings"):
            vectors = reader.input_embeddings(ids)
        else:
            vectors = reader.embed_tokens(ids)
    return vectors.float().mean(dim=1).numpy().astype(np.float64)


def id_scores(model, tokenizer, train_split) -> dict[str, float]:
    """The paper's Diversity and Memorization Scores (``hf_metaid.evaluation.id_quality``) of the items' IDs as the
    model reads them; the memorization score takes each training interaction as a rating of 1 (the data have no
    stars)."""
    vectors = item_read_vectors(model, tokenizer)
    items = tokenizer.entity_vocabulary.items
    ratings: dict[str, dict[str, float]] = {}
    for user, item in zip(train_split["user"], train_split["item"], strict=True):
        ratings.setdefault(user, {})[item] = 1.0
    return {
        "diversity": diversity_score(vectors, np.arange(len(vectors))[:, None]),
        "memorization": memorization_score(dict(zip(items, vectors, strict=True)), ratings),
    }


def run_scheme_gpu(scheme: str, args: argparse.Namespace, work: Path) -> tuple[dict, dict]:
    sys.path.insert(0, str(HERE.parent / "examples"))
    import paper_recipe

    argv = ["--data", args.data, "--scheme", scheme, "--output-dir", str(work / scheme), "--seed", str(args.seed)]
    argv += ["--dry-run"] if args.dry_run else []
    report = paper_recipe.main(argv)
    model, tokenizer = load_for_inference(work / scheme / "model")
    splits = leave_one_out(paper_recipe.load_data(paper_recipe.parse_args(argv)))  # the data it trained on
    started = time.perf_counter()
    metrics, ranks = evaluate_all(model, tokenizer, splits, "unseen", args.limit)
    record = {
        "settings": report["settings"],
        "train_seconds": report["train_seconds"],
        "eval_seconds": time.perf_counter() - started,
        "train_loss": report["train_loss"],
        "device": report["device"],
        "processes": report["processes"],
        "dry_run": args.dry_run,
        "metrics": metrics,
    }
    return record, ranks


def run_references(args: argparse.Namespace) -> tuple[dict, dict]:
    """The counting references on the arms' splits: metrics and per-user ranks of each."""
    index = cpu_recipe("metaid", args).index  # the clusters of the META ID arm
    references = counting_references(args.data, embeddings=(index.embedding,), index=index)
    metrics, ranks = {}, {}
    for name in references.rankers:
        for split in SPLITS:
            targets = references.targets[split][: args.limit]
            for protocol, leave_out in PROTOCOLS:
                lists = references.ranked(name, split, leave_out)[: args.limit]
                rank = rank_of_target(lists, targets)
                ranks[f"{name}|{split}|{protocol}"] = rank.astype(np.int8)
                metrics.setdefault(name, {}).setdefault(split, {})[protocol] = {
                    **rank_metrics(rank),
                    "num_users": float(len(rank)),
                }
    return {"metrics": metrics, "order": list(references.rankers)}, ranks


def rank_metrics(rank: np.ndarray) -> dict[str, float]:
    """HR@k and NDCG@k from each user's 0-based rank of the target (-1: not in the list)."""
    per_user = per_user_values(rank)
    return {name: float(values.mean()) for name, values in per_user.items()}


def per_user_values(rank: np.ndarray) -> dict[str, np.ndarray]:
    """Each user's HR@k and NDCG@k (k in DEFAULT_KS), whose means are the metrics."""
    rank = rank.astype(np.int64)
    values = {}
    for k in DEFAULT_KS:
        hit = (rank >= 0) & (rank < k)
        values[f"hr@{k}"] = hit.astype(float)
        values[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
    return values


def run_arm(arm: str, args: argparse.Namespace, folder: Path, work: Path) -> None:
    """Run one arm and write its two files (JSON last, so a killed run leaves no finished-looking arm)."""
    out = folder / f"{arm}.json"
    if finished(out, args.force):
        add_missing_id_scores(arm, out, args, work)
        return
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if arm == "references":
        record, ranks = run_references(args)
    elif arm == "prompt-metaid-f-bug":
        record, ranks = run_generation_bug(arm, args, work)
    elif args.profile == "cpu":
        record, ranks = run_scheme_cpu(arm, args, work)
    else:
        record, ranks = run_scheme_gpu(arm, args, work)
    record.update(
        arm=arm,
        data=data_name(args.data),
        profile=args.profile,
        **({"recipe": args.recipe} if args.profile == "cpu" else {}),
        seed=args.seed,
        seconds=time.perf_counter() - started,
        threads=args.threads,
        machine=cpu_and_cores(),
        versions=f"python {platform.python_version()}, torch {torch.__version__}",
        command="python benchmarks/quality.py " + shlex.join(sys.argv[1:]),
    )
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{arm}.ranks.npz", **ranks)
    write_json(out, record)
    print(f"{arm}: {json.dumps(record['metrics'])[:400]}")


def add_missing_id_scores(arm: str, out: Path, args: argparse.Namespace, work: Path) -> None:
    """Give a finished arm that predates the ID scores its scores, from its model where ``--work`` still holds it."""
    record = json.loads(out.read_text())
    folder = work / record.get("model_of", arm) / "model"
    if arm == "references" or "id_scores" in record or not folder.is_dir():
        return
    model, tokenizer = load_for_inference(folder)
    record["id_scores"] = id_scores(model, tokenizer, split_data(args.data)[0]["train"])
    write_json(out, record)
    print(f"{arm}: ID scores added from {folder}: {record['id_scores']}")


# --------------------------------------------------------------------------------------------------- report
def load_arms(folder: Path) -> dict[str, dict]:
    """The finished arms of one data x profile folder, in the order of ARMS."""
    found = {}
    for arm in ARMS:
        path = folder / f"{arm}.json"
        if path.exists():
            record = json.loads(path.read_text())
            with np.load(folder / f"{arm}.ranks.npz") as ranks:
                record["ranks"] = {key: ranks[key] for key in ranks.files}
            found[arm] = record
    return found


def measured_rows(arms: dict[str, dict]) -> list[tuple[str, dict, dict]]:
    """``(row name, {split: {protocol: metrics}}, {split|protocol: ranks})`` of every scheme and reference."""
    rows = []
    for arm, record in arms.items():
        if arm in ABLATIONS:
            continue
        if arm == "references":
            for name in record["order"]:
                ranks = {
                    key.split("|", 1)[1]: value for key, value in record["ranks"].items() if key.split("|")[0] == name
                }
                rows.append((f"reference: {name}", record["metrics"][name], ranks))
        else:
            rows.append((SCHEME_NAMES[arm], record["metrics"], record["ranks"]))
    return rows


def any_record_metrics(record: dict) -> dict:
    """``{split: {protocol: metrics}}`` of a scheme arm, or of the first reference of the references arm."""
    return record["metrics"][record["order"][0]] if "order" in record else record["metrics"]


def paired_difference(first: np.ndarray, second: np.ndarray, metric: str) -> tuple[float, float]:
    """Mean of (first - second) over the same users and its standard error, std(d) / sqrt(n)."""
    difference = per_user_values(first)[metric] - per_user_values(second)[metric]
    n = len(difference)
    return float(difference.mean()), float(difference.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def standard_error(rank: np.ndarray, metric: str) -> float:
    """The standard error of one model's mean ``metric`` over its users, std / sqrt(n)."""
    values = per_user_values(rank)[metric]
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def metrics_table(rows, split: str) -> list[str]:
    header = [f"{m.upper()} {p}" for p, _ in PROTOCOLS for m in METRICS]
    lines = ["| arm | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for name, metrics, _ in rows:
        cells = [f"{metrics[split][p][m]:.4f}" for p, _ in PROTOCOLS for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def difference_table(rows, baseline: str = "META ID") -> list[str]:
    """META ID minus every other row on the test split, with the paired standard error."""
    base = next((ranks for name, _, ranks in rows if name == baseline), None)
    if base is None:
        return [f"({baseline} has not run yet: no differences.)"]
    header = [f"{m.upper()} {p}" for p, _ in PROTOCOLS for m in ("hr@10", "ndcg@10")]
    lines = ["| META ID minus | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for name, _, ranks in rows:
        if name == baseline:
            continue
        cells = []
        for protocol, _ in PROTOCOLS:
            for metric in ("hr@10", "ndcg@10"):
                key = f"test|{protocol}"
                mean, error = paired_difference(base[key], ranks[key], metric)
                verdict = "**beats**" if mean > error else ("loses" if mean < -error else "level")
                cells.append(f"{mean:+.4f} ± {error:.4f} {verdict}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def ablation_table(arms: dict[str, dict]) -> list[str]:
    """Each ablation arm beside the arm it changes: test HR@10 / NDCG@10 (history left out, then kept), the paired
    difference on the test split with the history left out, validation HR@10, and the ID scores."""
    header = (
        "| arm | what changed | validation HR@10 left out | test HR@10 / NDCG@10 left out | test HR@10 / NDCG@10 "
        "kept | minus its base, HR@10 left out | minus its base, NDCG@10 left out | diversity | memorization |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm in ("metaid", *ABLATIONS):
        record = arms.get(arm)
        if record is None:
            continue
        metrics = record["metrics"]
        base = ABLATION_BASELINE.get(arm)
        trained = record.get("recipe", DEFAULT_RECIPE)
        cells = [
            f"`{arm}`",
            ABLATIONS[arm][0] if arm in ABLATIONS else f"the META ID arm (the recipe {trained})",
            f"{metrics['validation']['left out']['hr@10']:.4f}",
            *(f"{metrics['test'][p]['hr@10']:.4f} / {metrics['test'][p]['ndcg@10']:.4f}" for p in ("left out", "kept")),
        ]
        for metric in ("hr@10", "ndcg@10"):
            if base in arms:
                mean, error = paired_difference(
                    record["ranks"]["test|left out"], arms[base]["ranks"]["test|left out"], metric
                )
                cells.append(f"{mean:+.4f} ± {error:.4f}")
            else:
                cells.append("—" if base is None else f"({base} not run)")
        scores = record.get("id_scores", {})
        cells += [f"{scores[name]:.3f}" if name in scores else "—" for name in ("diversity", "memorization")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def chart(rows, path: Path, title: str) -> None:
    """HR@10 and NDCG@10 on the test split per scheme (bars, ± one standard error), the references as horizontal
    lines; both protocols."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schemes = [row for row in rows if not row[0].startswith("reference: ")]
    references = [(name.removeprefix("reference: "), m) for name, m, _ in rows if name.startswith("reference: ")]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, metric in enumerate(("hr@10", "ndcg@10")):
        for column, (protocol, _) in enumerate(PROTOCOLS):
            axis = axes[row][column]
            values = [m["test"][protocol][metric] for _, m, _ in schemes]
            errors = [standard_error(ranks[f"test|{protocol}"], metric) for _, _, ranks in schemes]
            axis.bar(range(len(schemes)), values, yerr=errors, capsize=4, color="#4c72b0")
            axis.set_xticks(range(len(schemes)), [row[0] for row in schemes], rotation=20, ha="right")
            for index, (name, metrics) in enumerate(references):
                axis.axhline(
                    metrics["test"][protocol][metric], linestyle="--", color=colours[(index + 1) % len(colours)],
                    label=name,
                )  # fmt: skip
            axis.set_ylabel(metric.upper())
            axis.set_title(f"test, history {protocol}")
            if row == 0 and column == 0 and references:
                axis.legend(fontsize="small")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: same figures, same file
    plt.close(figure)


# The speed and scale measurements RESULTS.md embeds: (results file, the command that writes it, heading).
SPEED_FILES = (
    ("index_speed.md", "python benchmarks/index_speed.py", "Index stages on Beauty, both embedding backends"),
    ("train_overhead.md", "python benchmarks/train_overhead.py", "Training: META ID against a plain T5 of its size"),
    ("decode_speed.md", "python benchmarks/decode_speed.py", "Decoding throughput"),
    ("index_scale.md", "python benchmarks/index_scale.py", "Index cost against graph size"),
)
# Sequential recommenders trained on the same splits under a wall-clock budget (RecTools; the `benchmarks` extra).
SEQUENTIAL_FILES = (
    (
        "budget_comparison.md",
        "python benchmarks/quality_budget.py table",
        "The recipes against the references at each training budget",
    ),
    (
        "sequential_references.md",
        "python benchmarks/sequential_references.py run --model sasrec --budget 15",
        "SASRec and BERT4Rec (RecTools) at a training budget",
    ),
)
BEYOND_ONE_MACHINE = (
    "Past one machine (a plan, not measured here): the index's stages are separate, so each can move to the engine "
    'that scales it. The spectral SVD runs ARPACK on one core, in single precision with `svd_precision="float32"` '
    "(the `spectral32` rows above); past that, a randomized SVD (`torch.svd_lowrank`, on a GPU where there is one) "
    "takes the same normalised adjacency (how many power iterations it needs for the same IDs is not measured). "
    "FAISS k-means runs on GPUs (`faiss.Kmeans(..., "
    "gpu=True)` with faiss-gpu) for tens of millions of vectors. The embedding table and the training are torch "
    "modules: `accelerate launch` spreads the training over GPUs and machines unchanged (`examples/paper_recipe.py` "
    "is written for it). The index-cost table above says which stage and what memory grow first."
)


def speed_section(report_dir: Path, results: Path = HERE / "results") -> list[str]:
    """The speed and scale results files, embedded one after another with the command that regenerates each."""
    return [*embedded_files("Speed and scale", SPEED_FILES, report_dir, results), BEYOND_ONE_MACHINE]


def embedded_files(title: str, files, report_dir: Path, results: Path = HERE / "results") -> list[str]:
    """A section of the report made of results files (``(name, command, heading)`` each), embedded one after
    another below their own title with the command that regenerates each; a missing one says how to make it."""
    lines = ["", f"## {title}", ""]
    for name, command, heading in files:
        path = results / name
        lines += [f"### {heading}", ""]
        if not path.exists():
            lines += [f"Not run yet: `{command}`.", ""]
            continue
        lines += [f"From [`{name}`]({os.path.relpath(path, report_dir)}); regenerate: `{command}`.", ""]
        for line in path.read_text(encoding="utf-8").strip().splitlines()[1:]:  # below the file's own title
            if line.strip() == "Commands:" or line.startswith("    python ") or (not line.strip() and not lines[-1]):
                continue  # the file's own command list goes (the line above names it); blank lines stay single
            if line.startswith("#"):
                line = "###" + line
            if line.startswith("!["):  # an image beside the results file: its path from the report
                alt, target = line[2:].split("](", 1)
                line = f"![{alt}]({os.path.relpath(path.parent / target.rstrip(')'), report_dir)})"
            lines.append(line)
        if lines[-1]:
            lines.append("")
    return lines


def recipes_section() -> list[str]:
    """The named recipes with the figures each measured on Beauty, as ``hf_metaid.workflow.recipes`` quotes them: the
    one place those figures are kept, so that the report, the command's help and the README's table cannot drift
    apart."""
    return [
        "",
        "## The named recipes",
        "",
        "`--recipe NAME` of `hf-metaid index`, `train` and `demo`; what "
        "`hf_metaid.workflow.recipes.describe(NAME)` says of each, figures on Beauty's test split, every user (how "
        "they were chosen: `README.md` here, "
        "`results/demo.md`, `results/quality_budget.md`).",
        "",
        *(f"- `{name}`: {recipes.describe(name)}" for name in recipes.names()),
    ]


def report(data: str, report_path: Path | None = None, results: Path = RESULTS) -> Path:
    """Write the report and chart of ``data`` from every finished arm of both profiles."""
    name = data_name(data)
    root = results / Path(name).stem
    path = report_path or (BEAUTY_REPORT if name == "beauty" else root / "RESULTS.md")
    lines = [
        f"# Every ID scheme against the counting references ({name})",
        "",
        "Regenerate: `python benchmarks/quality.py" + ("" if name == "beauty" else f" --data {data}") + "` (cpu "
        "profile: every arm, then this file; a finished arm is skipped unless `--force`). "
        "`benchmarks/quality.py` says what each arm is; every number of the profile sections came from the arms' "
        "files under "
        f"`{root.relative_to(HERE.parent) if root.is_relative_to(HERE.parent) else root}`.",
        "",
        "Protocol: leave-one-out, every user of the split, top 10 over all items by beam search over real items "
        "(the references: their own top 10); history **kept** in the ranking (the paper's protocol) or **left "
        "out**. Standard errors: each difference is taken user by user on the same users, its standard error is "
        "std(d)/sqrt(n) (paired); a scheme beats another when the mean difference exceeds one standard error.",
        "",
        "How to rerun each benchmark, what each results file holds and what the figures showed: "
        f"[`benchmarks/README.md`]({os.path.relpath(HERE / 'README.md', path.parent)}).",
    ]
    other_recipes = sorted(folder.name for folder in root.glob("cpu-*") if folder.is_dir())
    for profile in ("cpu", *other_recipes, "gpu"):
        arms = load_arms(root / profile)
        heading = f"cpu profile, recipe {profile.removeprefix('cpu-')}" if "-" in profile else f"{profile} profile"
        lines += ["", f"## {heading}", ""]
        if not arms:
            lines.append(
                "Not run: no arm of this profile has finished on this data."
                + (" It needs a GPU: `python benchmarks/quality.py --profile gpu`." if profile == "gpu" else "")
            )
            continue
        rows = measured_rows(arms)
        missing = [SCHEME_NAMES[arm] for arm in ARMS if arm not in arms and arm in SCHEME_NAMES]
        missing += [f"`{arm}`" for arm in ABLATIONS if arm not in arms and profile.startswith("cpu")]
        if missing or "references" not in arms:
            lines += [f"Not run yet: {', '.join(missing + ([] if 'references' in arms else ['references']))}.", ""]
        any_record = next(iter(arms.values()))
        schemes = [record for arm, record in arms.items() if arm != "references"]
        users = {split: int(any_record_metrics(any_record)[split]["kept"]["num_users"]) for split in SPLITS}
        if any(record.get("dry_run") for record in arms.values()):
            lines += [
                "**A dry run** (`--dry-run`: paper_recipe.py's CPU check, a tiny T5 on 50 users for 5 steps): it "
                "shows that the path runs, not how the recipe ranks.",
                "",
            ]
        device = next((record["device"] for record in arms.values() if record.get("device")), None)
        lines += [
            f"Machine: {any_record['machine']}{f'; device {device}' if device else ''}; {any_record['versions']}; "
            f"seed {any_record['seed']}. Users: "
            f"{users['validation']:,} (validation), {users['test']:,} (test).",
            "",
            "Test split:",
            "",
            *metrics_table(rows, "test"),
            "",
            "Validation split:",
            "",
            *metrics_table(rows, "validation"),
            "",
            "META ID minus each arm, test split (paired, ± one standard error):",
            "",
            *difference_table(rows),
        ]
        scored = [(arm, arms[arm]["id_scores"]) for arm in SCHEMES if "id_scores" in arms.get(arm, {})]
        if scored:
            lines += [
                "",
                "The paper's Diversity and Memorization Scores of each scheme's item IDs as its model reads them "
                "(see the ablations below for how they are computed):",
                "",
                "| scheme | diversity | memorization |",
                "|---|---:|---:|",
                *(f"| {SCHEME_NAMES[arm]} | {s['diversity']:.3f} | {s['memorization']:.3f} |" for arm, s in scored),
            ]
        if any(arm in ABLATIONS for arm in arms):
            lines += [
                "",
                "Ablations: META ID with one thing changed, each against the arm it changes (the prompt arms against "
                "`prompt-metaid`, whose encoder reads the history's ID tokens, so F acts there; the decoder recipe "
                "reads an anonymous prompt in the encoder and the history in the decoder, where F has no ID token "
                "to act on, unless it is put on the decoder's ID tokens too: `metaid-decoder-f`). Users appear "
                "in no prompt of the decoder recipe, so their tokens never reach the model: there META ID for items "
                "only is the META ID row, META ID for users only is the row of the scheme the items get (SID, RID, "
                "CID or IID above), and both is the META ID row again. Diversity and memorization: the paper's scores "
                "(`hf_metaid.evaluation.id_quality`) of each item's ID as the model reads it (the mean input vector of "
                "its ID tokens), memorization over the training interactions taken as ratings of 1.",
                "",
                *ablation_table(arms),
            ]
        lines += ["", "Wall time per arm (seconds; index + training + evaluation of both splits under both protocols):"]
        lines += ["", "| arm | index s | train s | steps | epochs | eval s | total s | threads | command |"]
        lines += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        commands: dict[str, int] = {}
        for arm, record in arms.items():
            cells = [
                SCHEME_NAMES.get(arm, arm),
                *(f"{record[key]:.0f}" if record.get(key) is not None else "—" for key in ("index_seconds",
                  "train_seconds")),
                str(record.get("steps", "—")),
                f"{record['epochs']:.1f}" if record.get("epochs") else "—",
                f"{record['eval_seconds']:.0f}" if record.get("eval_seconds") else "—",
                f"{record['seconds']:.0f}",
                str(record["threads"]),
                str(commands.setdefault(record["command"], len(commands) + 1)),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Commands (the arms' own, numbered as in the table):", ""]
        lines += [f"{number}. `{command}`" for command, number in commands.items()]
        if schemes:
            settings = schemes[0]["settings"]
            lines += ["", f"Settings of the first scheme arm: `{json.dumps(settings, sort_keys=True)}`"]
        png = root / profile / "quality.png"
        chart(rows, png, f"{name}, {profile} profile: test HR@10 / NDCG@10 per ID scheme; dashed: references")
        lines += ["", f"![test HR@10 and NDCG@10 per scheme]({os.path.relpath(png, path.parent)})"]
    if name == "beauty":
        lines += recipes_section()
        lines += embedded_files("Sequential references", SEQUENTIAL_FILES, path.parent)
        lines += speed_section(path.parent)
    lines += [
        "",
        "## Published figures (quoted, not measured here)",
        "",
        "Amazon Beauty, leave-one-out, full ranking; HR@10 / NDCG@10 as the source states them (whether the history "
        "was left out is rarely said). They are not comparable with the rows above: other models, budgets and "
        "hardware.",
        "",
        "| model | HR@10 / NDCG@10 | source |",
        "|---|---|---|",
        *(f"| {model} | {figures} | {source} |" for model, figures, source in PUBLISHED),
    ]
    write_report(path, lines)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="beauty", help="'beauty', 'markov' or any file load_interactions reads")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--arms",
        default=None,
        help=f"comma-separated, from {', '.join(ARMS)} (default: all; the gpu profile: the schemes and references)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads of training and evaluation")
    parser.add_argument("--force", action="store_true", help="run finished arms again")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report from the arms' files")
    parser.add_argument("--seed", type=int, default=0, help="gpu profile: the recipe's seed (cpu: the recipe's)")
    parser.add_argument(
        "--recipe",
        choices=recipes.names(),
        default=None,
        help=f"cpu profile: the named recipe (hf_metaid.workflow.recipes) of the scheme arms and the decoder ablations "
        f"(default: {DEFAULT_RECIPE}; another one writes to the folder cpu-NAME)",
    )
    parser.add_argument("--work", type=Path, default=Path("runs/quality"), help="where models are saved")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the arms' files go")
    parser.add_argument("--report", type=Path, default=None, help="the report's path (default: see the docstring)")
    small = parser.add_argument_group("small data (recorded with each arm; the defaults are the recipe's)")
    small.add_argument("--clusters", type=int, default=None, help="K of META ID's clustering")
    small.add_argument("--d-model", type=int, default=None)
    small.add_argument("--d-ff", type=int, default=None)
    small.add_argument("--batch-size", type=int, default=None)
    small.add_argument("--max-steps", type=int, default=None, help="stop training early (a check of the path)")
    small.add_argument("--limit", type=int, default=None, help="evaluate only the first LIMIT users of each split")
    small.add_argument("--dry-run", action="store_true", help="gpu profile: paper_recipe.py's CPU dry run")
    args = parser.parse_args(argv)
    if args.arms is None:
        args.arms = ",".join(ARMS if args.profile == "cpu" else (*SCHEMES, "references"))
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
    ablations = sorted(set(args.arms.split(",")) & set(ABLATIONS))
    if ablations and args.profile != "cpu":
        parser.error(f"the ablations {ablations} run on the cpu profile only")
    if args.recipe is not None and args.profile != "cpu":
        parser.error("--recipe is the cpu profile's; the gpu profile trains examples/paper_recipe.py")
    args.recipe = args.recipe or DEFAULT_RECIPE
    return args


def profile_folder(args: argparse.Namespace) -> str:
    """The folder of a run's arms under its data's: the profile, or ``cpu-NAME`` for another recipe than the
    default."""
    return args.profile if args.recipe == DEFAULT_RECIPE else f"{args.profile}-{args.recipe}"


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    folder = args.results / Path(data_name(args.data)).stem / profile_folder(args)
    if not args.report_only:
        for arm in args.arms.split(","):
            run_arm(arm, args, folder, args.work / Path(data_name(args.data)).stem / profile_folder(args))
    return report(args.data, args.report, args.results)


if __name__ == "__main__":
    main()
