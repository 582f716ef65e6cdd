"""Time ``MetaIDIndexer.fit`` on the embedded Beauty training split for both embedding backends (median of 3), with
the peak resident memory inside each stage, and report each backend's quality proxy.

Usage: python benchmarks/index_speed.py [--repeats 3] [--embeddings skipgram,spectral]
(writes benchmarks/results/index_speed.md)
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import hf_metaid
from hf_metaid.indexing import MetaIDIndexer

try:  # run as a script: the sibling modules are importable from this folder
    from benchmark_common import machine
    from embedding_quality import RESULTS, validation_proxy
    from index_scale import STAGES, MemorySampler, stage_costs
except ImportError:  # pragma: no cover - imported as a package module
    from .benchmark_common import machine
    from .embedding_quality import RESULTS, validation_proxy
    from .index_scale import STAGES, MemorySampler, stage_costs


def timed_fit(embedding: str, train) -> tuple[dict, object]:
    """One fit: seconds and peak GiB of every stage (``index_scale.stage_costs``), and the vocabulary."""
    indexer = MetaIDIndexer(embedding=embedding)
    with MemorySampler() as sampler:
        started = time.perf_counter()
        vocab = indexer.fit(train)
    stages = stage_costs(indexer.timings_, sampler, started, embedding)
    stages["total_s"] = {
        "seconds": indexer.timings_["total_s"],
        "peak_rss_gib": max(stage["peak_rss_gib"] for stage in stages.values()),
    }
    return stages, vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--embeddings", default="skipgram,spectral")
    args = parser.parse_args()
    header = machine()
    split = hf_metaid.leave_one_out(hf_metaid.load_interactions())
    train = split["train"]
    lines = ["# MetaIDIndexer.fit speed on Beauty", "", f"Machine: {header}.", ""]
    for embedding in args.embeddings.split(","):
        runs, digests, vocab = [], set(), None
        for attempt in range(args.repeats):
            stages, vocab = timed_fit(embedding, train)
            runs.append(stages)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "vocab.json"
                vocab.save(path)
                digests.add(hashlib.sha256(path.read_bytes()).hexdigest()[:16])
            done = ", ".join(f"{name} {stage['seconds']:.2f}" for name, stage in stages.items())
            print(f"{embedding} run {attempt + 1}: {done}", flush=True)
        proxy = validation_proxy(vocab, split["validation"])
        params = MetaIDIndexer(embedding=embedding).get_params()
        lines += [
            f"## embedding={embedding}",
            "",
            f"Train split: {len(train):,} interactions, {len(vocab.users):,} users, {len(vocab.items):,} items. "
            f"Parameters: {', '.join(f'{k}={v}' for k, v in params.items())}.",
            "",
            f"| stage | median of {args.repeats} (s) | min (s) | max (s) | peak resident memory in the stage (GiB) |",
            "|---|---|---|---|---|",
        ]
        for stage in (*STAGES[embedding], "total_s"):
            values = [r[stage]["seconds"] for r in runs]
            lines.append(
                f"| {stage.removesuffix('_s')} | {statistics.median(values):.2f} | {min(values):.2f} | "
                f"{max(values):.2f} | {max(r[stage]['peak_rss_gib'] for r in runs):.2f} |"
            )
        lines += [
            "",
            f"Vocabulary: {vocab.num_clusters} cluster tokens + {vocab.num_ranks} rank tokens = "
            f"{len(vocab.new_tokens)} new tokens; {len(digests)} distinct saved file(s) over {args.repeats} runs "
            "(1 = byte-identical).",
            "",
            "Validation proxy (see `benchmarks/embedding_quality.py`): "
            f"last-item HR@10 {proxy['last_hr']:.4f}, user HR@10 {proxy['user_hr']:.4f}, "
            f"same cluster {proxy['same_cluster']:.4f}.",
            "",
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    (RESULTS / "index_speed.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - started:.0f} s")
