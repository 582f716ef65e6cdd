"""Sequential references: RecTools' SASRec and BERT4Rec trained under a wall-clock budget on the library's splits.

Users compare a sequential recommender with SASRec, so the table needs one trained the way the META ID recipes are:
on the same leave-one-out training split (each user's items but the last two, ``hf_metaid.leave_one_out``), on one
torch thread, for a fixed number of minutes of training, then scored on every user of the validation and the test
split, top 10 over all items, with the user's history kept in the ranking (the paper's protocol) and left out, by the
library's own metrics (``hf_metaid.evaluation.metrics``). The models are RecTools' (``rectools.models.SASRecModel``
and ``BERT4RecModel``, PyTorch Lightning underneath); this script converts the data, stops the training at the budget
and scores.

Commands:
    choose    train each loss for a short budget, score the validation split only: the setting a budget run takes
    run       train for a budget (15, 30 or 60 minutes) with the chosen setting, score validation and test
    converge  a long run in whole epochs, resumable: each invocation continues from the last checkpoint until its
              allowance is spent; validation is scored every few epochs and the run stops when it no longer
              improves; test is scored once, on the best validation checkpoint
    table     write results/sequential_references.md from the JSON files

Usage:
    python benchmarks/sequential_references.py choose --model sasrec --budget 5
    python benchmarks/sequential_references.py run --model sasrec --budget 15
    python benchmarks/sequential_references.py converge --model sasrec --allowance 30   # again to continue
    python benchmarks/sequential_references.py table

Needs RecTools with its torch extra (``pip install -e ".[benchmarks]"``, see benchmarks/README.md); the rest of the
project does not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its threads (thread_policy.md)

from benchmark_common import machine, write_report
from harness import PROTOCOLS, write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sequential_references"
TABLE = HERE / "results" / "sequential_references.md"
MODELS = ("sasrec", "bert4rec")
LOSSES = ("softmax", "sampled_softmax", "gBCE")
BUDGETS = (15, 30, 60)  # minutes of training of the `run` rows, as quality_budget.md's
SPLITS = ("validation", "test")
KS = (5, 10)
# The model's shape: RecTools' SASRec defaults but 64 factors and 50 positions (Beauty's users have 8.9 items on
# average, 204 at most), the size the earlier comparison used; `--factors` changes it.
DEFAULTS = {
    "n_blocks": 2,
    "n_heads": 4,
    "n_factors": 64,
    "dropout_rate": 0.2,
    "session_max_len": 50,
    "lr": 1e-3,
    "batch_size": 128,
    "n_negatives": 256,
    "gbce_t": 0.2,
}
INSTALL_HINT = (
    "benchmarks/sequential_references.py needs RecTools with its torch extra (rectools[torch] >=0.19,<0.20): "
    'pip install -e ".[benchmarks]" (on Python 3.11/3.12 see benchmarks/README.md: RecTools 0.19 pins numpy<2 '
    "there, so it goes in with --no-deps)"
)


class MissingDependency(RuntimeError):
    """RecTools (or its torch extra) is not installed."""


def require_rectools():
    """The ``rectools`` module with its torch models, or :class:`MissingDependency` saying how to install it: the
    script is part of the benchmarks, not of the library, so its dependency is an extra."""
    try:
        import pytorch_lightning  # noqa: F401
        import rectools
        from rectools.models import BERT4RecModel, SASRecModel  # noqa: F401
        from rectools.models.nn.transformers.base import TransformerModelBase  # noqa: F401
    except ImportError as error:
        raise MissingDependency(f"{INSTALL_HINT}; import failed: {error}") from error
    import pandas

    if int(pandas.__version__.split(".")[0]) >= 3:  # RecTools 0.19 passes pd.unique a tuple, which pandas 3 refuses
        raise MissingDependency(f"{INSTALL_HINT}; RecTools 0.19 needs pandas < 3, found pandas {pandas.__version__}")
    return rectools


# ------------------------------------------------------------------------------------------- data (pure Python)
def interaction_columns(users: Sequence[str], histories: Sequence[Sequence[str]]) -> dict[str, list]:
    """RecTools' interaction columns (``user_id``, ``item_id``, ``weight``, ``datetime``) of each user's history, the
    position in the history as its time stamp: Beauty has no time stamps, and RecTools orders a session by time, so
    the position keeps the order of the split."""
    if len(users) != len(histories):
        raise ValueError(f"users and histories differ in length: {len(users)} against {len(histories)}")
    columns: dict[str, list] = {"user_id": [], "item_id": [], "weight": [], "datetime": []}
    for user, history in zip(users, histories, strict=True):
        columns["user_id"].extend([user] * len(history))
        columns["item_id"].extend(history)
        columns["weight"].extend([1.0] * len(history))
        columns["datetime"].extend(range(len(history)))
    return columns


def training_histories(train_rows: Mapping[str, Sequence]) -> tuple[list[str], list[list[str]]]:
    """``(users, histories)`` of the library's ``train`` split (rows ``user``, ``item``, ``position``), each history
    in position order, users in first-appearance order."""
    sequences: dict[str, list[tuple[int, str]]] = {}
    for user, item, position in zip(train_rows["user"], train_rows["item"], train_rows["position"], strict=True):
        sequences.setdefault(user, []).append((position, item))
    return list(sequences), [[item for _, item in sorted(pairs)] for pairs in sequences.values()]


def check_alignment(train_rows: Mapping[str, Sequence], splits: Mapping[str, Mapping[str, Sequence]]) -> None:
    """Fail unless the splits are the library's leave-one-out: the model trains on each user's training part, which
    must be the validation history, and the test history must be it plus the validation target; otherwise the
    figures would not be comparable with the other rows of the table."""
    users, histories = training_histories(train_rows)
    trained = dict(zip(users, histories, strict=True))
    validation, test = splits["validation"], splits["test"]
    if list(validation["user"]) != list(test["user"]):
        raise ValueError("the validation and test splits list different users (or another order)")
    for user, history, target, test_history in zip(
        validation["user"], validation["history"], validation["target"], test["history"], strict=True
    ):
        if trained.get(user, []) != list(history):
            raise ValueError(f"user {user!r}: the training rows are not the validation history")
        if list(test_history) != [*history, target]:
            raise ValueError(f"user {user!r}: the test history is not the validation history + its target")


def ranked_lists(users: Sequence[str], recommended: Iterable[tuple[str, str, int]], k: int) -> list[list[str]]:
    """Each user's list (``users``' order) from ``(user, item, rank)`` rows of any order, best first, cut at ``k``; a
    user the model returned nothing for gets an empty list, which the metrics count as a miss, so every user of the
    split stays in the denominator."""
    per_user: dict[str, list[tuple[int, str]]] = {user: [] for user in users}
    for user, item, rank in recommended:
        if user not in per_user:
            raise ValueError(f"a recommendation for user {user!r}, who is not in the split")
        per_user[user].append((int(rank), item))
    return [[item for _, item in sorted(per_user[user])[:k]] for user in users]


# ----------------------------------------------------------------------------------- the budget (pure Python)
class BudgetClock:
    """Training seconds against a budget. ``spent`` says when a budget run stops (after the batch that used it up);
    ``next_epoch_fits`` says whether a run that stops only at epoch ends (``converge``) starts another epoch: only if
    the mean epoch so far fits in what is left."""

    def __init__(self, budget_seconds: float, now: Callable[[], float] = time.perf_counter):
        if not budget_seconds > 0:
            raise ValueError(f"the training budget must be a positive number of seconds, got {budget_seconds!r}")
        self.budget = float(budget_seconds)
        self._now = now
        self._started: float | None = None

    def start(self) -> None:
        """Start counting; a later call keeps the first start, as Lightning starts every ``fit`` of one invocation."""
        if self._started is None:
            self._started = self._now()

    def elapsed(self) -> float:
        """Seconds of training in this invocation."""
        return 0.0 if self._started is None else self._now() - self._started

    def spent(self) -> bool:
        """Whether this invocation's budget is used up."""
        return self.elapsed() >= self.budget

    def next_epoch_fits(self, epochs_done_here: int) -> bool:
        """Whether another whole epoch is expected to end inside the budget, from this invocation's mean epoch."""
        if epochs_done_here <= 0:
            return not self.spent()
        return self.elapsed() + self.elapsed() / epochs_done_here <= self.budget


def budget_minutes(text: str) -> float:
    """A training budget in minutes from the command line: a positive number."""
    try:
        minutes = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the budget must be a number of minutes, got {text!r}") from None
    if not minutes > 0:
        raise argparse.ArgumentTypeError(f"the budget must be positive, got {text!r}")
    return minutes


# -------------------------------------------------------------------------------- results files (pure Python)
def choice_path(root: Path, data: str, model: str, loss: str, minutes: float, factors: int) -> Path:
    """Where ``choose`` writes one validation arm under the results folder ``root``."""
    return root / data / "validation" / f"{model}-{loss}-f{factors}-{minutes:g}min.json"


def chosen_setting(records: Iterable[dict], model: str, protocol: str = "left out") -> dict:
    """The validation arm of ``model`` with the highest validation HR@10 under ``protocol`` (NDCG@10 breaks a tie):
    the setting the budget runs train. Only validation figures take part; the records hold no test figures."""
    candidates = [record for record in records if record["model"] == model]
    if not candidates:
        raise ValueError(f"no validation arm of {model!r}: run `choose --model {model}` first")
    for record in candidates:
        if "test" in record["metrics"]:
            raise ValueError(f"validation arm {record['setting']} holds test figures; the choice must not see them")
    return max(
        candidates,
        key=lambda r: (r["metrics"]["validation"][protocol]["hr@10"], r["metrics"]["validation"][protocol]["ndcg@10"]),
    )


def describe_setting(setting: Mapping) -> str:
    """One short line of a setting: loss (negatives), factors, blocks, positions, lr, batch."""
    loss = setting["loss"] + (
        f" ({setting['n_negatives']} negatives)" if setting["loss"] in ("sampled_softmax", "gBCE") else ""
    )
    return (
        f"{loss}, {setting['n_factors']} factors, {setting['n_blocks']} blocks, {setting['session_max_len']} "
        f"positions, lr {setting['lr']:g}, batch {setting['batch_size']}"
    )


def cell(metrics: Mapping, split: str, protocol: str) -> str:
    """``HR@10 / NDCG@10`` of one split and protocol, or a dash where it was not scored."""
    figures = metrics.get(split, {}).get(protocol)
    return f"{figures['hr@10']:.4f} / {figures['ndcg@10']:.4f}" if figures else "—"


def cpu_seconds(record: Mapping) -> str:
    """The CPU seconds the training got, or a dash for a record that predates the count."""
    return f"{record['train_cpu_seconds']:.0f}" if "train_cpu_seconds" in record else "—"


# What the `converge` state files of each earlier format got wrong; a state without "format" is format 1.
STATE_FORMAT = 2
STALE_FORMATS = {
    1: "its script trained on with the network in evaluation mode (no dropout) after the first validation scoring "
    "of each invocation, and a resumed invocation drew the network's weight matrices afresh (RecTools' Xavier "
    "initialisation at the start of a fit that is not marked fitted) while keeping the checkpoint's Adam moments and "
    "epoch count, so its figures after a resume are a re-initialised network's; its seeds were per invocation, not "
    "per epoch",
}


def set_aside_stale_run(state_path: Path, state: Mapping, checkpoints: Path) -> str | None:
    """Move a long run that this script cannot continue (its state file of an earlier :data:`STATE_FORMAT`, and the
    checkpoints under ``checkpoints``) aside, the state file to ``state.formatN.json`` beside it and the checkpoints
    to ``formatN/`` under ``checkpoints``, and return the note the new run keeps; ``None`` for a current state."""
    old = state.get("format", 1)
    if old == STATE_FORMAT:
        return None
    if old not in STALE_FORMATS:
        raise ValueError(f"{state_path}: state format {old!r}, which this script does not know")
    archived = state_path.with_name(f"state.format{old}.json")
    state_path.replace(archived)
    moved = []
    for name in ("last.ckpt", "best.ckpt"):
        if (checkpoints / name).exists():
            (checkpoints / f"format{old}").mkdir(parents=True, exist_ok=True)
            (checkpoints / name).replace(checkpoints / f"format{old}" / name)
            moved.append(name)
    best = state.get("best")
    reached = f", best validation HR@10 (left out) {best['hr@10']:.4f} after {best['epoch']} epochs" if best else ""
    where = f"; its checkpoints are in {checkpoints / f'format{old}'}" if moved else ""
    return (
        f"An earlier run ({state['epochs']} epochs over {state['invocations']} invocation(s){reached}) was set aside "
        f"in {archived.name}{where}: {STALE_FORMATS[old]}. This run started from scratch."
    )


def table(data: str = "beauty", results: Path = RESULTS, path: Path = TABLE) -> Path:
    """Write the results file from every finished arm's JSON: the validation arms that chose the setting, the
    budget rows and the long run (with its state, so an unfinished one says how far it got)."""
    root = results / data
    chosen = sorted(root.glob("validation/*.json"))
    runs = sorted(root.glob("run/*.json"), key=lambda p: json.loads(p.read_text())["budget_minutes"])
    converging = sorted(root.glob("converge/*/state.json"))
    records = [json.loads(p.read_text(encoding="utf-8")) for p in (*chosen, *runs)]
    lines = [
        "# Sequential references: RecTools' SASRec and BERT4Rec at a wall-clock budget",
        "",
        "`benchmarks/sequential_references.py` (its docstring says what it is). Trained on the library's "
        "leave-one-out training split on one torch thread for a fixed number of minutes (Lightning stops after the "
        "batch that uses the budget up), scored on every user of the split, top 10 over all items, with the history "
        "kept in the ranking and left out, by `hf_metaid.evaluation.metrics`. Each cell: HR@10 / "
        "NDCG@10. The machine's 2 cores were shared with other runs during these timings, so epochs per minute "
        "vary from run to run; the epochs reached are in each row, and `CPU s` is the CPU time the training "
        "process got (one thread) within its wall-clock budget.",
        "",
        "## Settings tried on validation",
        "",
        "Each loss trained for the same short budget; the budget runs take the best validation HR@10 with the "
        "history left out. No test figure took part.",
        "",
        "| model | setting | budget min | train s | steps | epochs | validation kept | validation left out |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for record in records[: len(chosen)]:
        lines.append(
            f"| {record['model']} | {describe_setting(record['setting'])} | {record['budget_minutes']:g} | "
            f"{record['train_seconds']:.0f} | {record['steps']} | {record['epochs']:.2f} | "
            f"{cell(record['metrics'], 'validation', 'kept')} | "
            f"{cell(record['metrics'], 'validation', 'left out')} |"
        )
    figures = [r["metrics"]["validation"]["left out"] for r in records[: len(chosen)]]
    if figures and all("num_users" in f for f in figures):
        best = max(figures, key=lambda f: f["hr@10"])
        error = math.sqrt(best["hr@10"] * (1 - best["hr@10"]) / best["num_users"])
        lines += [
            "",
            f"The best validation HR@10 ({best['hr@10']:.4f} over {best['num_users']:,.0f} users) has a binomial "
            f"standard error of {error:.4f}: settings closer than that are not told apart by this choice.",
        ]
    lines += [
        "",
        "## Budget runs",
        "",
        "| model | setting | budget min | train s | CPU s | epochs | test kept | test left out | validation left out "
        "| peak RSS |",
        "|---|---|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for record in records[len(chosen) :]:
        lines.append(
            f"| {record['model']} | {describe_setting(record['setting'])} | {record['budget_minutes']:g} | "
            f"{record['train_seconds']:.0f} | {cpu_seconds(record)} | {record['epochs']:.2f} | "
            f"{cell(record['metrics'], 'test', 'kept')} | "
            f"{cell(record['metrics'], 'test', 'left out')} | {cell(record['metrics'], 'validation', 'left out')} | "
            f"{record.get('peak_rss_mib', 0):.0f} MiB |"
        )
    lines += ["", "## Toward convergence", ""]
    if not converging:
        lines.append("Not run yet: `python benchmarks/sequential_references.py converge --model sasrec`.")
    for state_path in converging:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        status = "finished: " + state["stopped"] if state.get("stopped") else "unfinished (run `converge` again)"
        lines += [
            f"{state['model']}, {describe_setting(state['setting'])}: {state['epochs']} epochs in "
            f"{state['train_seconds']:.0f} s of training over {state['invocations']} invocation(s), {status}; "
            f"best validation HR@10 (left out) {state['best']['hr@10']:.4f} after {state['best']['epoch']} epochs."
            if state.get("best")
            else f"{state['model']}: {state['epochs']} epochs, {status}.",
            "",
            *(line for note in state.get("notes", []) for line in (note, "")),
            "| epochs | train s | validation kept | validation left out |",
            "|---:|---:|---|---|",
            *(
                f"| {point['epoch']} | {point['train_seconds']:.0f} | {cell(point['metrics'], 'validation', 'kept')} "
                f"| {cell(point['metrics'], 'validation', 'left out')} |"
                for point in state["history"]
            ),
            "",
        ]
        if state.get("test"):
            lines.append(
                f"Test on the best validation checkpoint (epoch {state['best']['epoch']}): kept "
                f"{cell(state['test'], 'test', 'kept')}, left out {cell(state['test'], 'test', 'left out')}."
            )
    machines = sorted(
        {record["machine"] for record in records} | {json.loads(p.read_text())["machine"] for p in converging}
    )
    lines += ["", "Machines:", "", *(f"- {line}" for line in machines)]
    commands = [record["command"] for record in records]
    commands += [command for p in converging for command in json.loads(p.read_text())["commands"]]
    write_report(path, lines, commands)
    return path


# --------------------------------------------------------------------------------------- RecTools (lazy imports)
def load_splits(data: str):
    """``(splits, item catalogue)`` of ``data`` as the library splits it, checked against the training rows."""
    import hf_metaid as hm

    interactions = hm.load_interactions(None if data == "beauty" else data)
    splits = hm.leave_one_out(interactions)
    check_alignment(splits["train"].to_dict(), {name: splits[name].to_dict() for name in SPLITS})
    return splits


def to_dataset(users: Sequence[str], histories: Sequence[Sequence[str]]):
    """A RecTools ``Dataset`` of the histories (interactions only, no features)."""
    import pandas as pd
    from rectools.dataset import Dataset

    frame = pd.DataFrame(interaction_columns(users, histories))
    frame["datetime"] = pd.to_datetime(frame["datetime"], unit="s")
    return Dataset.construct(frame)


def build_model(model: str, setting: Mapping, seed: int):
    """A RecTools model of ``setting``, unfitted, its recommendations on the CPU."""
    require_rectools()
    from rectools.models import BERT4RecModel, SASRecModel

    classes = {"sasrec": SASRecModel, "bert4rec": BERT4RecModel}
    if model not in classes:
        raise ValueError(f"model must be one of {sorted(classes)}, got {model!r}")
    return classes[model](**setting, recommend_torch_device="cpu", deterministic=False, verbose=0)


def budget_callback(clock: BudgetClock, stop_within_epoch: bool):
    """A Lightning callback that starts ``clock`` with the training and stops the run when the budget is spent:
    after the batch that spent it (``run``) or at the end of the last epoch that fits (``converge``)."""
    import pytorch_lightning as pl

    class StopAtBudget(pl.Callback):
        def __init__(self):
            self.epochs_here = 0  # whole epochs of this invocation, over all its fit() calls

        def on_train_start(self, trainer, module):
            clock.start()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
            if stop_within_epoch and clock.spent():
                trainer.should_stop = True

        def on_train_epoch_end(self, trainer, module):
            self.epochs_here += 1
            if not stop_within_epoch and not clock.next_epoch_fits(self.epochs_here):
                trainer.should_stop = True

    return StopAtBudget()


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch of ``converge``: a function of the run's seed and the epoch's number only."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_seeded_loader(loader, seed: int):
    """``loader`` (RecTools' training loader) with every epoch's randomness a function of ``(seed, epoch)``, so an
    epoch trained after a resume from a checkpoint is the epoch the uninterrupted run trains: the order is a
    permutation drawn from the epoch's seed (Lightning calls ``set_epoch`` before each epoch), and the loader's own
    draws come from a private generator, not torch's global one, which :func:`epoch_seeding` seeds for the epoch's
    negatives and dropout."""
    import torch
    from torch.utils.data import DataLoader, Sampler

    class EpochPermutation(Sampler):
        def __init__(self, size: int):
            self.size, self.epoch = size, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return self.size

        def __iter__(self):
            generator = torch.Generator().manual_seed(epoch_seed(seed, self.epoch))
            return iter(torch.randperm(self.size, generator=generator).tolist())

    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=EpochPermutation(len(loader.dataset)),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def epoch_seeding(seed: int):
    """A Lightning callback that seeds torch's global generator (RecTools' negatives, dropout) at each epoch's start
    from ``(seed, epoch)``: with :func:`epoch_seeded_loader`, an epoch does not depend on the epochs this process
    trained before it, only on the weights and optimiser state it starts from."""
    import pytorch_lightning as pl
    import torch

    class SeedEachEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            torch.manual_seed(epoch_seed(seed, trainer.current_epoch))

    return SeedEachEpoch()


def make_trainer(callbacks: list, max_epochs: int, checkpoint_folder: Path | None = None):
    """A CPU Lightning trainer without logger or progress bar; with ``checkpoint_folder``, a checkpoint (weights,
    optimiser, epoch) at every epoch's end, ``last.ckpt``, which ``converge`` resumes from."""
    import pytorch_lightning as pl

    if checkpoint_folder is not None:
        # no version counter: a resumed run (its folder moved, or the checkpoint from another run) must overwrite
        # last.ckpt, not write last-v1.ckpt beside it and leave the next invocation to resume from the stale one
        last = pl.callbacks.ModelCheckpoint(
            dirpath=checkpoint_folder, save_last=True, save_top_k=0, enable_version_counter=False
        )
        callbacks = [*callbacks, last]
    return pl.Trainer(
        max_epochs=max_epochs,
        min_epochs=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpoint_folder is not None,
        callbacks=callbacks,
    )


def score(fitted, splits, which: Sequence[str] = SPLITS) -> dict:
    """HR/NDCG@5/10 (and ``seen@k``, the top-k share spent on the user's own history) of a fitted model on every
    user of each split in ``which``, under both protocols: the histories are the split's (training part; + the
    validation item for test), items the model never saw in training are dropped from them by RecTools and cannot
    be recommended."""
    from hf_metaid.evaluation.metrics import MetricAccumulator

    metrics: dict = {}
    for split in which:
        rows = splits[split].to_dict()
        users, targets = rows["user"], rows["target"]
        dataset = to_dataset(users, rows["history"])
        for protocol, leave_out in PROTOCOLS:
            recommended = fitted.recommend(
                users=users, dataset=dataset, k=max(KS), filter_viewed=leave_out, on_unsupported_targets="warn"
            )
            rows_out = zip(recommended["user_id"], recommended["item_id"], recommended["rank"], strict=True)
            lists = ranked_lists(users, rows_out, max(KS))
            accumulator = MetricAccumulator(KS).add(lists, targets, rows["history"])
            metrics.setdefault(split, {})[protocol] = accumulator.compute()
    return metrics


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_for_budget(model: str, setting: Mapping, splits, minutes: float, seed: int):
    """``(fitted model, facts)``: ``model`` trained on the training split until ``minutes`` of training are spent."""
    import pytorch_lightning as pl

    pl.seed_everything(seed, verbose=False)
    users, histories = training_histories(splits["train"].to_dict())
    fitted = build_model(model, setting, seed)
    clock = BudgetClock(minutes * 60)
    fitted._trainer = make_trainer([budget_callback(clock, stop_within_epoch=True)], max_epochs=100_000)
    dataset = to_dataset(users, histories)
    cpu_started = time.process_time()
    fitted.fit(dataset)
    cpu_seconds = time.process_time() - cpu_started
    trainer = fitted.fit_trainer
    batches = len(fitted.data_preparator.get_dataloader_train())
    return fitted, {
        "train_seconds": clock.elapsed(),
        # the CPU time the training process got (one thread): below train_seconds where other runs share the cores
        "train_cpu_seconds": cpu_seconds,
        "steps": trainer.global_step,
        "batches_per_epoch": batches,
        "epochs": trainer.global_step / batches,
        "last_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    }


def record_of(args, model: str, setting: Mapping, facts: Mapping, metrics: Mapping) -> dict:
    """The JSON record every arm writes."""
    import pandas
    import pytorch_lightning
    import rectools

    return {
        "model": model,
        "setting": dict(setting),
        "budget_minutes": args.budget,
        "data": args.data,
        "seed": args.seed,
        "threads": args.threads,
        **facts,
        "metrics": metrics,
        "peak_rss_mib": peak_rss_mib(),
        "machine": machine(
            f"; rectools {rectools.__version__}, pytorch-lightning {pytorch_lightning.__version__}, "
            f"pandas {pandas.__version__}"
        ),
        "command": "python " + shlex.join(sys.argv),
    }


def setting_of(args, loss: str) -> dict:
    """The model's settings from the defaults, ``loss`` and the command line's size."""
    return {**DEFAULTS, "loss": loss, "n_factors": args.factors}


def choose(args) -> None:
    """Train each loss for ``--budget`` minutes, score validation only, one JSON per arm (finished ones skipped)."""
    splits = load_splits(args.data)
    for loss in args.losses:
        out = choice_path(args.results, args.name, args.model, loss, args.budget, args.factors)
        if out.exists() and not args.force:
            print(f"{out} exists: skipped", flush=True)
            continue
        setting = setting_of(args, loss)
        fitted, facts = train_for_budget(args.model, setting, splits, args.budget, args.seed)
        record = record_of(args, args.model, setting, facts, score(fitted, splits, ("validation",)))
        write_json(out, record)
        print(json.dumps({"loss": loss, **facts, "validation": record["metrics"]["validation"]}), flush=True)


def run(args) -> None:
    """Train the chosen setting for ``--budget`` minutes, score validation and test."""
    out = args.results / args.name / "run" / f"{args.model}-{args.budget:g}min.json"
    if out.exists() and not args.force:
        print(f"{out} exists: skipped", flush=True)
        return
    validation = [json.loads(p.read_text()) for p in sorted((args.results / args.name / "validation").glob("*.json"))]
    setting = chosen_setting(validation, args.model)["setting"]
    splits = load_splits(args.data)
    fitted, facts = train_for_budget(args.model, setting, splits, args.budget, args.seed)
    started = time.perf_counter()
    metrics = score(fitted, splits)
    record = record_of(args, args.model, setting, {**facts, "eval_seconds": time.perf_counter() - started}, metrics)
    write_json(out, record)
    print(json.dumps({key: record[key] for key in ("epochs", "train_seconds", "metrics")}), flush=True)


def converge(args) -> None:
    """One invocation of the long run: resume from ``last.ckpt`` under ``--work`` (weights, optimiser, epoch; the state
    file under ``--results`` names the folder), train whole epochs
    until ``--allowance`` minutes are spent, score validation every ``--every`` epochs, keep the best checkpoint;
    stop for good after ``--patience`` scorings without a better validation HR@10 or at ``--max-epochs``, then score
    test on the best checkpoint. The state file says where it stands. Every epoch's draws (order, negatives, dropout)
    come from ``(--seed, epoch)`` (the first invocation's seed), so invocations that resume reproduce the
    uninterrupted run's model; a state file of an earlier format (:data:`STALE_FORMATS`), which cannot be continued
    so, is set aside with its checkpoints and the run starts from scratch, with a note saying so."""
    folder = args.results / args.name / "converge" / args.model
    state_path = folder / "state.json"
    checkpoints = args.work / args.name / "converge" / args.model  # weights stay out of the results folder
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    note = set_aside_stale_run(state_path, state, checkpoints) if state is not None else None
    if note is not None:
        print(note, flush=True)
        state = None
    if state is None:
        validation = [
            json.loads(p.read_text()) for p in sorted((args.results / args.name / "validation").glob("*.json"))
        ]
        state = {
            "format": STATE_FORMAT,
            "notes": [note] if note else [],
            "model": args.model,
            "seed": args.seed,
            "setting": chosen_setting(validation, args.model)["setting"],
            "epochs": 0,
            "train_seconds": 0.0,
            "invocations": 0,
            "history": [],
            "best": None,
            "stopped": None,
            "every": args.every,
            "patience": args.patience,
            "max_epochs": args.max_epochs,
            "commands": [],
            "machine": "",
            "epochs_per_invocation": [],
        }
    if state["stopped"]:
        print(f"{state_path}: finished ({state['stopped']})", flush=True)
        return
    import pytorch_lightning as pl

    # the initial weights; each epoch's draws are then seeded from (seed, epoch), so that a resumed run trains the
    # epochs the uninterrupted one would (epoch_seeded_loader, epoch_seeding)
    seed = state.setdefault("seed", args.seed)  # the run's, whatever a later invocation's --seed says
    pl.seed_everything(seed, verbose=False)
    splits = load_splits(args.data)
    users, histories = training_histories(splits["train"].to_dict())
    dataset = to_dataset(users, histories)
    fitted = build_model(args.model, state["setting"], seed)
    clock = BudgetClock(args.allowance * 60)  # this invocation's wall clock, its scorings included
    state["checkpoints"] = str(checkpoints)
    stopper = budget_callback(clock, stop_within_epoch=False)
    fitted._trainer = make_trainer([stopper, epoch_seeding(seed)], state["max_epochs"], checkpoints)
    last = checkpoints / "last.ckpt"
    # the last epoch's end, which may be ahead of the state file where an invocation was killed while scoring
    resume = last if last.exists() else None
    # RecTools' fit() cannot resume a Lightning checkpoint: build the model as fit() does, then fit with ckpt_path.
    fitted._build_model_from_dataset(dataset)
    fitted.fit_trainer = fitted._trainer
    # RecTools draws the weight matrices afresh (Xavier) when a fit starts on a module not marked fitted, which
    # Lightning does after it has loaded the checkpoint's weights: a resumed module is marked fitted beforehand
    fitted.lightning_model.is_fitted = resume is not None
    train_loader = epoch_seeded_loader(fitted.data_preparator.get_dataloader_train(), seed)
    state["invocations"] += 1
    state["commands"] = sorted({*state["commands"], "python " + shlex.join(sys.argv)})
    state["machine"] = record_of(args, args.model, state["setting"], {}, {})["machine"]
    while not state["stopped"]:
        target = min((state["epochs"] // state["every"] + 1) * state["every"], state["max_epochs"])
        fitted.fit_trainer.fit_loop.max_epochs = target
        # scoring leaves the network in evaluation mode and Lightning's fit does not change the mode: back to
        # training mode (dropout) before each fit, as RecTools' own fit_partial does
        fitted.lightning_model.train()
        started = time.perf_counter()
        fitted.fit_trainer.fit(fitted.lightning_model, train_loader, ckpt_path=resume)
        state["train_seconds"] += time.perf_counter() - started  # training only, over all invocations
        resume = None
        done = fitted.fit_trainer.fit_loop.epoch_progress.current.completed
        state["epochs"] = done
        fitted.is_fitted = fitted.lightning_model.is_fitted = True
        if done >= target:  # a scoring point
            metrics = score(fitted, splits, ("validation",))
            state["history"].append({"epoch": done, "train_seconds": state["train_seconds"], "metrics": metrics})
            hr = metrics["validation"]["left out"]["hr@10"]
            if state["best"] is None or hr > state["best"]["hr@10"]:
                state["best"] = {"epoch": done, "hr@10": hr}
                shutil.copyfile(last, checkpoints / "best.ckpt")
            scorings_since_best = sum(1 for point in state["history"] if point["epoch"] > state["best"]["epoch"])
            if scorings_since_best >= state["patience"]:
                state["stopped"] = f"no better validation HR@10 in {state['patience']} scorings"
            elif done >= state["max_epochs"]:
                state["stopped"] = f"{state['max_epochs']} epochs reached"
        state["epochs_per_invocation"] = [
            *state.get("epochs_per_invocation", [])[: state["invocations"] - 1],
            stopper.epochs_here,
        ]
        write_json(state_path, state)
        if done < target or not clock.next_epoch_fits(stopper.epochs_here):
            break  # the allowance is spent: the next invocation resumes from last.ckpt
    if state["stopped"] and not state.get("test"):
        fitted.load_weights_from_checkpoint(checkpoints / "best.ckpt")
        state["test"] = score(fitted, splits, ("test",))
        write_json(state_path, state)
    print(json.dumps({key: state[key] for key in ("epochs", "train_seconds", "best", "stopped")}), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("choose", "run", "converge", "table"))
    parser.add_argument("--data", default="beauty", help="'beauty' or any file load_interactions reads")
    parser.add_argument("--model", choices=MODELS, default="sasrec")
    parser.add_argument("--budget", type=budget_minutes, default=15.0, help="minutes of training (choose, run)")
    parser.add_argument("--losses", type=lambda text: text.split(","), default=list(LOSSES), help="choose: a,b,c")
    parser.add_argument("--factors", type=int, default=DEFAULTS["n_factors"], help="choose: embedding size")
    parser.add_argument("--allowance", type=budget_minutes, default=30.0, help="converge: minutes this invocation")
    parser.add_argument("--every", type=int, default=5, help="converge: epochs between validation scorings")
    parser.add_argument("--patience", type=int, default=3, help="converge: scorings without gain before it stops")
    parser.add_argument("--max-epochs", type=int, default=400, help="converge: epochs at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="rerun a finished arm")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    parser.add_argument(
        "--work", type=Path, default=Path("runs/sequential_references"), help="converge: its checkpoints"
    )
    parser.add_argument("--table", type=Path, default=TABLE, help="the results file `table` writes")
    args = parser.parse_args(argv)
    unknown = [loss for loss in args.losses if loss not in LOSSES]
    if unknown:
        parser.error(f"--losses: {unknown} not among {list(LOSSES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    name = args.name = args.data if args.data == "beauty" else Path(args.data).stem
    if args.command == "table":
        table(name, args.results, args.table)
        return
    try:
        require_rectools()
    except MissingDependency as error:
        raise SystemExit(str(error)) from None
    import torch

    torch.set_num_threads(args.threads)
    {"choose": choose, "run": run, "converge": converge}[args.command](args)
    table(name, args.results, args.table)


if __name__ == "__main__":
    main()
