"""The recipes against the references at each training budget: one table from the results files already written.

For every budget of ``quality_budget.py`` (15, 30, 60 minutes of training on this 2-core machine) it sets side by
side, on Beauty's test split (every user, HR@10 / NDCG@10, history kept and left out): the META ID arm chosen on
validation within that budget (``results/quality_budget/``), RecTools' SASRec and BERT4Rec trained for the same
minutes with their loss chosen on validation (``results/sequential_references/``), and, once each, the item Markov
chain counted on the training split (``results/quality/beauty/cpu/references.json``) and SASRec trained until its
validation stopped improving. It trains nothing: ``quality_budget.py table`` writes it, into
``results/quality_budget.md`` and ``results/budget_comparison.md`` (which ``benchmarks/RESULTS.md`` embeds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from benchmark_common import write_report
from sequential_references import RESULTS as SEQUENTIAL
from sequential_references import cell, describe_setting

HERE = Path(__file__).resolve().parent
CHAIN = HERE / "results" / "quality" / "beauty" / "cpu" / "references.json"
CHAIN_ROW = "item Markov chain"
REPORT = HERE / "results" / "budget_comparison.md"
MODEL_NAMES = {"sasrec": "SASRec", "bert4rec": "BERT4Rec"}
# The protocols an arm is chosen under, each on validation HR@10 under that same protocol: its test figures are then
# read under it (the paper's protocol keeps the history in the ranking, the demo's leaves it out).
SELECTIONS = (("kept", "history kept (the paper's protocol)"), ("left out", "history left out"))


def chosen_arm(records: Iterable[Mapping], minutes: float, protocol: str) -> str | None:
    """The Beauty arm with a test result whose training took no longer than ``minutes`` and whose validation HR@10
    under ``protocol`` is the best; ``None`` where no arm fits. Only validation figures choose."""
    beauty = [r for r in records if r.get("data", "beauty") == "beauty"]
    tested = {r["arm"] for r in beauty if r["split"] == "test"}
    fits = [
        r for r in beauty if r["split"] == "validation" and r["arm"] in tested and r["train_seconds"] <= 60 * minutes
    ]
    if not fits:
        return None
    return max(fits, key=lambda r: r["metrics"][protocol]["hr@10"])["arm"]


def _pair(metrics: Mapping) -> str:
    return f"{metrics['hr@10']:.4f} / {metrics['ndcg@10']:.4f}"


def _threads(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def metaid_rows(records: list[Mapping], minutes: float) -> list[str]:
    """The META ID arm chosen under each protocol within ``minutes`` (one row where both protocols choose it)."""
    by_arm = {(r["arm"], r["split"]): r for r in records if r.get("data", "beauty") == "beauty"}
    chosen: dict[str, list[str]] = {}
    for protocol, described in SELECTIONS:
        arm = chosen_arm(records, minutes, protocol)
        if arm is not None:
            chosen.setdefault(arm, []).append(described)
    rows = []
    for arm, protocols in chosen.items():
        trained, tested = by_arm[(arm, "validation")], by_arm[(arm, "test")]["metrics"]
        how = "under both protocols" if len(protocols) == len(SELECTIONS) else "with the " + protocols[0]
        rows.append(
            f"| {minutes:g} minutes | META ID `{arm}`, chosen on validation HR@10 {how} | "
            f"{trained['train_seconds']:,.0f} s, {_threads(trained['train_threads'])} | {trained['epochs']:.1f} | "
            f"{_pair(tested['kept'])} | {_pair(tested['left out'])} |"
        )
    return rows or [f"| {minutes:g} minutes | META ID: no arm with a test result trained within it | | | | |"]


def reference_rows(runs: list[Mapping], minutes: float) -> list[str]:
    """SASRec, then BERT4Rec, trained for ``minutes`` with their chosen setting (``runs``: the run files' records)."""
    rows = [
        f"| {minutes:g} minutes | {MODEL_NAMES[record['model']]} (RecTools), {describe_setting(record['setting'])} | "
        f"{record['train_seconds']:,.0f} s, {_threads(record['threads'])}"
        + (f", {record['train_cpu_seconds']:,.0f} CPU s" if "train_cpu_seconds" in record else "")
        + f" | {record['epochs']:.1f} | {cell(record['metrics'], 'test', 'kept')} | "
        f"{cell(record['metrics'], 'test', 'left out')} |"
        for model in MODEL_NAMES
        for record in runs
        if record["model"] == model and record["budget_minutes"] == minutes
    ]
    return rows or [f"| {minutes:g} minutes | SASRec, BERT4Rec: not run at this budget | | | | |"]


def converged_rows(sequential: Path) -> list[str]:
    """Each long run that finished with a test figure: its best validation epoch's test figures."""
    rows = []
    for path in sorted(sequential.glob("beauty/converge/*/state.json")):
        state = json.loads(path.read_text(encoding="utf-8"))
        if not (state.get("stopped") and state.get("test")):
            continue
        best = state["best"]["epoch"]
        seconds = next(p["train_seconds"] for p in state["history"] if p["epoch"] == best)
        rows.append(
            f"| until validation stops improving | {MODEL_NAMES[state['model']]} (RecTools), "
            f"{describe_setting(state['setting'])}: its best validation epoch | {seconds:,.0f} s to that epoch, 1 "
            f"thread ({state['epochs']} epochs, {state['train_seconds']:,.0f} s in all) | {best} | "
            f"{cell(state['test'], 'test', 'kept')} | {cell(state['test'], 'test', 'left out')} |"
        )
    return rows


def chain_row(chain: Path) -> list[str]:
    """The item Markov chain's test figures under both protocols, where its results file exists."""
    if not chain.exists():
        return []
    test = json.loads(chain.read_text(encoding="utf-8"))["metrics"][CHAIN_ROW]["test"]
    return [
        f"| none | the item Markov chain, counted on the training split | counts | — | {_pair(test['kept'])} | "
        f"{_pair(test['left out'])} |"
    ]


def comparison_lines(
    records: list[Mapping],
    budgets: Iterable[float],
    sequential: Path = SEQUENTIAL,
    chain: Path = CHAIN,
) -> list[str]:
    """The table, its heading line and its header: references first, then each budget, then the long runs."""
    users = max(
        (
            r["metrics"]["left out"].get("num_users", 0)
            for r in records
            if r["split"] == "test" and r.get("data", "beauty") == "beauty"
        ),
        default=0,
    )
    noise = (
        f" One HR@10 near 0.08 over {users:,.0f} users has a binomial standard error of "
        f"{math.sqrt(0.08 * 0.92 / users):.4f}."
        if users
        else ""
    )
    lines = [
        "Beauty test split, every user, HR@10 / NDCG@10 with the history kept in the ranking (the paper's "
        "protocol) and left out. Every trained model's settings were chosen on validation, never on test: META ID's "
        "arm by validation HR@10 among the arms that trained within the budget (one thread, train seconds as "
        "measured, often beside another run), the references' loss by validation HR@10 (history left out) after "
        "the same short budget each." + noise,
        "",
        "| training budget | model | training | epochs | test, history kept | test, history left out |",
        "|---|---|---|---:|---|---|",
        *chain_row(chain),
    ]
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(sequential.glob("beauty/run/*.json"))]
    for minutes in budgets:
        lines += [*metaid_rows(records, minutes), *reference_rows(runs, minutes)]
    return [*lines, *converged_rows(sequential)]


def write(lines: list[str], path: Path = REPORT) -> Path:
    """``results/budget_comparison.md``: ``lines`` (:func:`comparison_lines`) under their title, with the commands
    that regenerate their sources."""
    commands = [
        # fast and best as they are now; recipe-fast's and recipe-best's files are them before the chain prior's reach
        "python benchmarks/quality_budget.py run fast-earlier3|best-earlier3 --split validation|test --threads 1",
        "python benchmarks/sequential_references.py run --model sasrec|bert4rec --budget 15|30|60",
        "python benchmarks/sequential_references.py converge --model sasrec --every 2 --patience 3",
        "python benchmarks/quality.py --arms references",
        "python benchmarks/quality_budget.py table",
    ]
    write_report(path, ["# The recipes against the references at each training budget", "", *lines], commands)
    return path
