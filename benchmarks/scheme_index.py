"""Index time and cluster sizes of every ID scheme on the embedded Beauty data, on one thread.

For each scheme (META ID with the demo's spectral embedding, sequential, random, collaborative, independent): the
median ``fit`` time over the repeats with its stages, whether the repeats saved byte-identical files, the token counts,
the items per cluster token, the saved file's size and the time to build a tokenizer from it; for the collaborative
IDs also the depth of the tree and its leaf sizes. ``--synthetic N`` adds collaborative indexing of a synthetic
power-law table of N interactions (``benchmark_common.power_law_interactions``, index_scale.py's graph: Zipf users
and items, N / 20 of each), to show how the sparse tree grows.

Usage: python benchmarks/scheme_index.py [--repeats 3] [--synthetic 1000000]
(writes benchmarks/results/scheme_index.md)
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, set before numpy loads
    os.environ[_name] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hf_metaid as hm  # noqa: E402
from benchmark_common import machine, power_law_interactions, write_report  # noqa: E402
from hf_metaid.workflow.schemes import SCHEMES, build_indexer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DECODER_K100_INDEX = hm.recipes.get("decoder-k100").index  # the benchmarks' META ID settings


def sizes_of(vocab: hm.EntityVocabulary) -> np.ndarray:
    """Items per cluster token, over the clusters that hold at least one item trained on (the cold-start cluster
    left out)."""
    counts = np.bincount(vocab.item_codes[:, 0], minlength=vocab.num_clusters)
    cold = vocab.metadata["cold_start"]["cluster"]
    if cold is not None:
        counts[cold] = 0
    return counts[counts > 0]


def measure(scheme: str, train, names, repeats: int) -> dict:
    config = DECODER_K100_INDEX if scheme == "metaid" else None
    runs, digests = [], set()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metaid_vocab.json"
        for _ in range(repeats):
            indexer = build_indexer(scheme, config)
            vocab = indexer.fit(train, catalogue=names)
            runs.append(dict(indexer.timings_))
            vocab.save(path)
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        file_bytes = path.stat().st_size
    started = time.perf_counter()
    hm.MetaIDTokenizer.from_base(None, vocab)
    tokenizer_s = time.perf_counter() - started
    stages = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    return {"vocab": vocab, "stages": stages, "identical": len(digests) == 1, "file": file_bytes, "tok": tokenizer_s}


def scheme_rows(results: dict) -> list[str]:
    lines = [
        "| scheme | fit median (s) | stages, median (s) | byte-identical | cluster tokens | rank tokens | new tokens "
        "| items per item cluster: clusters, min / median / mean / max (cold-start cluster left out) | file (MB) "
        "| tokenizer build (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scheme, result in results.items():
        vocab, stages = result["vocab"], result["stages"]
        parts = ", ".join(
            f"{name.removesuffix('_s')} {value:.2f}" for name, value in stages.items() if name != "total_s"
        )
        sizes = sizes_of(vocab)
        spread = f"{len(sizes)}: {sizes.min()} / {np.median(sizes):g} / {sizes.mean():.1f} / {sizes.max()}"
        lines.append(
            f"| {scheme} | {stages['total_s']:.2f} | {parts or '-'} | {'yes' if result['identical'] else 'NO'} "
            f"| {vocab.num_clusters:,} | {vocab.num_ranks:,} | {len(vocab.new_tokens):,} | {spread} "
            f"| {result['file'] / 1e6:.1f} | {result['tok']:.2f} |"
        )
    return lines


def tree_lines(vocab: hm.EntityVocabulary, title: str) -> list[str]:
    facts = vocab.metadata
    depths = np.bincount([len(path) for path in facts["leaf_paths"]])
    leaf = facts["leaf_sizes"]
    return [
        f"{title}: {facts['items_without_cooccurrence']:,} items co-occur with no other; "
        f"{facts['item_leaves']:,} leaves "
        f"(items per leaf min {leaf['min']}, median {leaf['median']:g}, max {leaf['max']}) at depths "
        + ", ".join(f"{depth}: {count}" for depth, count in enumerate(depths) if count)
        + f"; {facts['isolated_groups']} group(s) of items with no co-occurrence set apart, "
        f"{facts['unsplit_groups']} group(s) the spectral step left whole; {facts['user_blocks']:,} user blocks.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=0, help="also index a power-law table of N interactions")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = machine(" (1 thread used)")
    data = hm.load_interactions()
    split, names = hm.leave_one_out(data), hm.catalogue(data)
    train = split["train"]
    results = {}
    for scheme in SCHEMES:
        results[scheme] = measure(scheme, train, names, args.repeats)
        print(scheme, {k: round(v, 2) for k, v in results[scheme]["stages"].items()}, flush=True)
    lines = [
        "# Index time and cluster sizes of every ID scheme on Beauty",
        "",
        f"Machine: {header}.",
        "",
        f"Command: `python benchmarks/scheme_index.py --repeats {args.repeats}"
        + (f" --synthetic {args.synthetic}`" if args.synthetic else "`")
        + f". Train split: {len(train):,} interactions; the catalogue's {len(names['users']):,} users and "
        f"{len(names['items']):,} items all get IDs (those absent from training by the cold-start rule). Settings: "
        "each scheme's defaults, META ID with the demo's (spectral embedding, K = 100). Times are the median of "
        f"{args.repeats} fits.",
        "",
        *scheme_rows(results),
        "",
        *tree_lines(results["collaborative"]["vocab"], "Collaborative tree on Beauty (N = 20, M = 200, OpenP5's)"),
        "",
        "Independent IDs: one cluster token per user and per item, so the token count is the entity count; the rank "
        "tokens beyond `<R0>` are the cold-start cluster's (one per catalogue entity absent from training: "
        f"{results['independent']['vocab'].metadata['cold_start']['items']} items on Beauty).",
        "",
    ]
    if args.synthetic:
        table = power_law_interactions(args.synthetic)
        split = hm.leave_one_out(hm.load_interactions(table))
        indexer = hm.CollaborativeIndexer()
        vocab = indexer.fit(split["train"])
        stages = ", ".join(f"{name.removesuffix('_s')} {value:.1f} s" for name, value in indexer.timings_.items())
        print("synthetic", stages, flush=True)
        lines += [
            f"Synthetic power-law table ({args.synthetic:,} interactions drawn, {len(split['train']):,} in the train "
            f"split after the 3-interaction rule and leave-one-out; {len(vocab.users):,} users, "
            f"{len(vocab.items):,} items), collaborative defaults, one fit: {stages}; peak resident memory of the "
            f"whole benchmark process after it {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB.",
            "",
            *tree_lines(vocab, "Its tree"),
            "",
        ]
    write_report(RESULTS / "scheme_index.md", lines)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - started:.0f} s")
