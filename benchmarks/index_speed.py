"""Time ``MetaIDIndexer().fit`` on the embedded Beauty training split (median of 3) and report its quality proxy.

Usage: python benchmarks/index_speed.py [--repeats 3]   (writes benchmarks/results/index_speed.md)
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

try:  # run as a script: the sibling module is importable from this folder
    from embedding_quality import RESULTS, machine, validation_proxy
except ImportError:  # pragma: no cover - imported as a package module
    from .embedding_quality import RESULTS, machine, validation_proxy

STAGES = ("graph_s", "walks_s", "skipgram_s", "kmeans_s", "total_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header = machine()
    split = hf_metaid.leave_one_out(hf_metaid.load_interactions())
    train = split["train"]
    runs, digests, vocab = [], set(), None
    for attempt in range(args.repeats):
        indexer = MetaIDIndexer()
        vocab = indexer.fit(train)
        runs.append(dict(indexer.timings_))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "vocab.json"
            vocab.save(path)
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest()[:16])
        print(f"run {attempt + 1}: " + ", ".join(f"{k} {runs[-1].get(k, 0.0):.2f}" for k in STAGES), flush=True)
    proxy = validation_proxy(vocab, split["validation"])
    params = indexer.get_params()
    lines = [
        "# MetaIDIndexer().fit speed on Beauty",
        "",
        f"Machine: {header}.",
        "",
        f"Train split: {len(train):,} interactions, {len(vocab.users):,} users, {len(vocab.items):,} items. "
        f"Default parameters: {', '.join(f'{k}={v}' for k, v in params.items())}.",
        "",
        f"| stage | median of {args.repeats} (s) | min (s) | max (s) |",
        "|---|---|---|---|",
    ]
    for stage in STAGES:
        values = [r.get(stage, 0.0) for r in runs]
        lines.append(
            f"| {stage.removesuffix('_s')} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    lines += [
        "",
        f"Vocabulary: {vocab.num_clusters} cluster tokens + {vocab.num_ranks} rank tokens = "
        f"{len(vocab.new_tokens)} new tokens; {len(digests)} distinct saved file(s) over {args.repeats} runs "
        "(1 = byte-identical).",
        "",
        "Validation proxy of the default (see `benchmarks/embedding_quality.py`): "
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
