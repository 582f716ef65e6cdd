"""How the index stage's cost grows: ``MetaIDIndexer.fit`` on synthetic power-law interaction graphs.

Each point is a graph of ``N`` interactions between ``N / 20`` users and ``N / 20`` items (the largest: 1M users,
1M items, 20M interactions), whose user activity and item popularity both follow a Zipf law (exponent 1, the long
tail of real catalogues), drawn with a seed. The indexer is the recipe ``decoder-k100``'s (K = 100, 64 dimensions,
spectral, joint clustering), the same with its SVD in single precision (``spectral32``: ``svd_precision="float32"``),
or the skip-gram path (the paper's; run only as far as it fits the budget, its per-epoch rate recorded so a larger
graph's cost is an explicit extrapolation, never a measurement).

Every point runs in its own process (a clean memory high-water mark): the time of each stage (``timings_``: graph,
spectral or walks + skip-gram, k-means; vocabulary = the rest of ``fit``), and the peak resident memory inside each
stage, sampled every 20 ms from ``/proc/self/statm`` (and the process's ``ru_maxrss`` as a check). Building the
table itself (the synthetic draw and the Arrow table) is timed apart and is not part of the index cost.

Each point writes ``results/index_scale/<backend>-<N>.json``; a finished point is skipped unless ``--force``. The
table goes to ``results/index_scale.md`` and the log-log plot of seconds against interactions to
``results/index_scale.png``.

Usage:
    python benchmarks/index_scale.py                                 # every point, then the table
    python benchmarks/index_scale.py --points spectral-1000000       # one point
    python benchmarks/index_scale.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmark_common import cpu_and_cores, power_law_interactions, write_report

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "index_scale"
TABLE = HERE / "results" / "index_scale.md"
PLOT = HERE / "results" / "index_scale.png"
SIZES = (100_000, 1_000_000, 5_000_000, 20_000_000)
POINTS = (
    *(f"spectral-{size}" for size in SIZES),
    *(f"spectral32-{size}" for size in SIZES),
    "skipgram-100000",
    "skipgram-1000000",
)
# backend -> the indexer's settings; spectral32 is the spectral path with its SVD in single precision
BACKENDS = {
    "spectral": {"embedding": "spectral"},
    "spectral32": {"embedding": "spectral", "svd_precision": "float32"},
    "skipgram": {"embedding": "skipgram"},
}
SPECTRAL = ("spectral", "spectral32")
STAGES = {
    "spectral": ("graph_s", "spectral_s", "kmeans_s", "vocabulary_s"),
    "spectral32": ("graph_s", "spectral_s", "kmeans_s", "vocabulary_s"),
    "skipgram": ("graph_s", "walks_s", "skipgram_s", "kmeans_s", "vocabulary_s"),
}
CLUSTERS = 100  # K of every point: the recipe decoder-k100's (the benchmarks' comparison base)
TARGET = (20_000_000, 600.0, 12.0)  # the largest graph: seconds and GiB the spectral path must stay within
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class MemorySampler:
    """Resident memory of this process every ``interval`` seconds, on a daemon thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), resident_bytes()))
            self._stop.wait(interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, stop: float) -> int:
        """The largest sample taken between ``start`` and ``stop`` (bytes); for a stage shorter than the interval,
        the sample nearest to it."""
        inside = [rss for when, rss in self.samples if start <= when <= stop]
        if inside or not self.samples:
            return max(inside, default=0)
        return min(self.samples, key=lambda sample: abs(sample[0] - (start + stop) / 2))[1]


def stage_costs(timings: dict[str, float], sampler: MemorySampler, started: float, backend: str) -> dict[str, dict]:
    """Seconds and peak GiB of every stage of one fit that began at ``started`` (its ``timings_``; the vocabulary
    stage is the rest of ``fit``)."""
    named = [name for name in STAGES[backend] if name != "vocabulary_s"]
    seconds = {**timings, "vocabulary_s": timings["total_s"] - sum(timings[name] for name in named)}
    stages, clock = {}, started
    for name in STAGES[backend]:
        stop = clock + seconds[name]
        stages[name] = {"seconds": seconds[name], "peak_rss_gib": sampler.peak(clock, stop) / 2**30}
        clock = stop
    return stages


def measure_point(backend: str, size: int, seed: int = 0) -> dict:
    """Fit the indexer on one synthetic graph; seconds and peak memory of every stage."""
    import torch

    from hf_metaid.indexing import MetaIDIndexer

    torch.set_num_threads(1)
    start_rss = resident_bytes()
    started = time.perf_counter()
    train = power_law_interactions(size, seed)
    table_seconds = time.perf_counter() - started
    indexer = MetaIDIndexer(**BACKENDS[backend], seed=seed, num_clusters=CLUSTERS)
    with MemorySampler() as sampler:
        fit_start = time.perf_counter()
        vocabulary = indexer.fit(train)
        fit_stop = time.perf_counter()
    stages = stage_costs(indexer.timings_, sampler, fit_start, backend)
    return {
        "backend": backend,
        "interactions": size,
        "users": len(vocabulary.users),
        "items": len(vocabulary.items),
        "new_tokens": len(vocabulary.new_tokens),
        "table_seconds": table_seconds,
        "total_seconds": indexer.timings_["total_s"],
        "peak_rss_gib": sampler.peak(fit_start, fit_stop) / 2**30,
        "start_rss_gib": start_rss / 2**30,
        "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30,
        "stages": stages,
        "epochs": indexer.config.epochs if backend == "skipgram" else None,
        "settings": BACKENDS[backend],
        "seed": seed,
        "machine": cpu_and_cores(),
    }


def run_point(point: str, folder: Path, force: bool, seed: int) -> None:
    """One point in a fresh process, its JSON written whole at the end."""
    out = folder / f"{point}.json"
    if out.exists() and not force:
        print(f"{out} exists: skipped (--force runs it again)")
        return
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, __file__, "--measure", point, "--seed", str(seed), "--results", str(folder)]
    print(f"{point}: running", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})


def measure_and_write(point: str, folder: Path, seed: int) -> None:
    backend, size = point.rsplit("-", 1)
    record = measure_point(backend, int(size), seed)
    partial = folder / f"{point}.json.partial"
    partial.write_text(json.dumps(record, indent=2, sort_keys=True))
    partial.replace(folder / f"{point}.json")
    print(json.dumps(record, indent=2))


def load_points(folder: Path) -> list[dict]:
    """Every finished point of ``folder``, spectral first, each backend by size."""
    records = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return sorted(records, key=lambda r: (list(BACKENDS).index(r["backend"]), r["interactions"]))


def scale_table(records: list[dict]) -> list[str]:
    """One row per point: stage seconds and peak memory (GiB) inside each stage."""
    lines = [
        "| backend | interactions | users | items | ID tokens | stage: seconds (peak GiB) | fit s | peak GiB |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for record in records:
        stages = ", ".join(
            f"{name.removesuffix('_s')} {record['stages'][name]['seconds']:.1f} "
            f"({record['stages'][name]['peak_rss_gib']:.2f})"
            for name in STAGES[record["backend"]]
        )
        lines.append(
            f"| {record['backend']} | {record['interactions']:,} | {record['users']:,} | {record['items']:,} | "
            f"{record['new_tokens']:,} | {stages} | {record['total_seconds']:.1f} | {record['peak_rss_gib']:.2f} |"
        )
    return lines


def target_finding(backend: str, points: list[dict]) -> list[str]:
    """The largest point of one spectral backend against the target: met or not, its slowest and hungriest stage."""
    if not points:
        return []
    largest = max(points, key=lambda r: r["interactions"])
    size, seconds, gib = TARGET
    slowest = max(largest["stages"].items(), key=lambda item: item[1]["seconds"])
    hungriest = max(largest["stages"].items(), key=lambda item: item[1]["peak_rss_gib"])
    if largest["interactions"] < size:
        verdict = f"the {size:,}-interaction target point has not run"
    elif largest["total_seconds"] <= seconds and largest["peak_rss_gib"] <= gib:
        verdict = "met"
    else:
        verdict = "not met"
    return [
        f"- Largest {backend} point measured: {largest['interactions']:,} interactions, "
        f"{largest['total_seconds']:.0f} s and {largest['peak_rss_gib']:.1f} GiB peak "
        f"(target for {size:,}: ≤ {seconds:.0f} s and ≤ {gib:.0f} GiB: {verdict}). "
        f"Its slowest stage is {slowest[0].removesuffix('_s')} ({slowest[1]['seconds']:.0f} s); its memory "
        f"peaks in {hungriest[0].removesuffix('_s')} ({hungriest[1]['peak_rss_gib']:.1f} GiB)."
    ]


def findings(records: list[dict]) -> list[str]:
    """What the measured points say: the target, the stage that dominates, the skip-gram rate; nothing invented."""
    lines = []
    for backend in SPECTRAL:
        lines += target_finding(backend, [r for r in records if r["backend"] == backend])
    spectral = [r for r in records if r["backend"] == "spectral"]
    if len(spectral) >= 2:
        first, last = spectral[0], spectral[-1]
        slope = np.log(last["total_seconds"] / first["total_seconds"]) / np.log(
            last["interactions"] / first["interactions"]
        )
        lines.append(
            f"- Spectral fit time grows as interactions^{slope:.2f} between {first['interactions']:,} and "
            f"{last['interactions']:,} (the slope of the log-log line through those two points)."
        )
    for backend in STAGES:
        points = [r for r in records if r["backend"] == backend]
        if points:
            sizes = ", ".join(f"{r['new_tokens'] - CLUSTERS:,} entities at {r['interactions']:,}" for r in points)
            lines.append(
                f"- {backend}: the largest cluster (= the rank tokens, ID tokens minus the {CLUSTERS} cluster tokens) "
                f"holds {sizes} interactions."
            )
    lines += projection(spectral)
    for record in (r for r in records if r["backend"] == "skipgram"):
        seconds = record["stages"]["skipgram_s"]["seconds"]
        rate = record["interactions"] * record["epochs"] / seconds
        lines.append(
            f"- Skip-gram at {record['interactions']:,} interactions: {seconds:.0f} s for {record['epochs']} "
            f"epoch(s) of walks, {rate:,.0f} interactions per second per epoch; at that rate "
            f"20M interactions would need about {20_000_000 / rate / 60:.0f} minutes per epoch (an extrapolation, "
            "not run)."
        )
    return lines


def memory_gib() -> float:
    """This machine's memory (``/proc/meminfo``), the ceiling of a one-machine index."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no MemTotal in /proc/meminfo")


def projection(spectral: list[dict]) -> list[str]:
    """Where one machine of this kind runs out, extrapolated along the line through the two largest spectral points
    on a log-log scale, of the memory the fit adds to the process it starts in (a projection, said as one)."""
    if len(spectral) < 2 or spectral[-1]["interactions"] < 1_000_000:
        return ["- No projection: it needs two spectral points, the larger of 1M interactions or more."]
    (small, large), limit = spectral[-2:], memory_gib()
    grow = np.log(large["interactions"] / small["interactions"])
    added = [record["peak_rss_gib"] - record["start_rss_gib"] for record in (small, large)]
    memory_slope = np.log(added[1] / added[0]) / grow
    time_slope = np.log(large["total_seconds"] / small["total_seconds"]) / grow
    runs_out = large["interactions"] * ((limit - large["start_rss_gib"]) / added[1]) ** (1 / memory_slope)
    seconds = large["total_seconds"] * (runs_out / large["interactions"]) ** time_slope
    return [
        f"- Projection (not measured): along the log-log line through the two largest points (the memory the fit "
        f"adds grows as interactions^{memory_slope:.2f}, its time as interactions^{time_slope:.2f}), this "
        f"machine's {limit:.0f} GiB would be reached at about {runs_out / 1e6:,.0f}M interactions (users = items "
        f"= interactions / 20), after about {seconds / 60:,.0f} minutes of fitting."
    ]


def plot(records: list[dict], path: Path) -> None:
    """Seconds of each stage and of the whole fit against interactions, log-log, per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5), constrained_layout=True)
    for backend, style in (("spectral", "-"), ("spectral32", "--"), ("skipgram", ":")):
        points = sorted((r for r in records if r["backend"] == backend), key=lambda r: r["interactions"])
        if not points:
            continue
        sizes = [r["interactions"] for r in points]
        axis.plot(sizes, [r["total_seconds"] for r in points], style, marker="o", linewidth=2, label=f"{backend}: fit")
        for name in STAGES[backend]:
            axis.plot(sizes, [r["stages"][name]["seconds"] for r in points], style, marker=".", alpha=0.6,
                      label=f"{backend}: {name.removesuffix('_s')}")  # fmt: skip
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("interactions (users = items = interactions / 20)")
    axis.set_ylabel("seconds")
    axis.set_title("MetaIDIndexer.fit on synthetic power-law graphs")
    axis.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def report(folder: Path = RESULTS, table: Path = TABLE, png: Path = PLOT) -> list[dict]:
    records = load_points(folder)
    missing = [point for point in POINTS if not (folder / f"{point}.json").exists()]
    lines = [
        "# Index cost against graph size (synthetic power-law graphs)",
        "",
        "Regenerate: `python benchmarks/index_scale.py` (each point in its own process; a finished point is "
        "skipped unless `--force`). Users = items = interactions / 20, Zipf activity and popularity, seed 0; the "
        "indexer of the recipe `decoder-k100` (K = 100, 64 dimensions, joint clustering), spectral (its SVD in "
        'float64, the default, or float32: `spectral32`, `svd_precision="float32"`) or skip-gram (1 epoch of walks). '
        "One "
        "torch thread, OpenBLAS on one thread in the SVD (as the library runs it). Peak GiB: the largest resident "
        "memory sampled inside the stage (every 20 ms), the table already in memory.",
        "",
        f"Machine: {records[0]['machine'] if records else cpu_and_cores()}.",
        "",
        *scale_table(records),
        "",
        *findings(records),
    ]
    if missing:
        lines += ["", f"Not run yet: {', '.join(missing)}."]
    if records:
        plot(records, png)
        lines += ["", f"![seconds against interactions, log-log]({os.path.relpath(png, table.parent)})"]
    write_report(table, lines)
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default=",".join(POINTS), help=f"comma-separated, from {', '.join(POINTS)}")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the points' JSON files go")
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child process of one point
    args = parser.parse_args(argv)
    if args.measure:
        measure_and_write(args.measure, args.results, args.seed)
        return
    points = args.points.split(",")
    for point in points:
        backend, _, size = point.rpartition("-")
        if backend not in STAGES or not size.isdigit():
            parser.error(f"a point is BACKEND-INTERACTIONS with BACKEND one of {', '.join(BACKENDS)}, got {point!r}")
    if not args.report_only:
        for point in points:
            run_point(point, args.results, args.force, args.seed)
    report(args.results, args.table, args.table.with_suffix(".png"))


if __name__ == "__main__":
    main()
