"""Training-step time of the demo's tiny T5 under three CPU thread set-ups, on an idle machine and beside a busy core.

Why: a small model's matrix products are short, so OpenMP threads spend much of a step waiting for each other. With
the default (spinning) wait policy, two threads on two cores collapse as soon as anything else uses one core; with
``OMP_WAIT_POLICY=PASSIVE`` (what ``hf-metaid`` sets) they keep their speed-up when idle and lose little under load.

Each set-up runs in its own process (the policy is read when torch loads OpenMP): a tiny T5 (the demo's shape) takes
``--steps`` AdamW steps on batches of the demo's compact Beauty prompts; the median step time is reported. The set-ups
are interleaved per repetition so that machine noise hits all of them alike; the "busy" rows run a pure-Python busy
loop on the side for the whole measurement.

Run: ``python benchmarks/thread_policy.py [--steps 40 --repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "thread_policy.md"
SETUPS = (("1 thread", 1, None), ("2 threads, spinning", 2, "ACTIVE"), ("2 threads, passive", 2, "PASSIVE"))

WORKER = """
import statistics, sys, time
import torch
import hf_metaid as hm
from hf_metaid.prompt_templates import COMPACT_TEMPLATES
from hf_metaid.training.collator import MetaIDDataCollator

threads, steps, batch_size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
data = hm.load_interactions()
train = hm.leave_one_out(data)["train"]
vocabulary = hm.SequentialIndexer().fit(train)
tokenizer = hm.MetaIDTokenizer.from_base(None, vocabulary)
model = hm.MetaIDForConditionalGeneration.from_base(hm.tiny_t5_config(dropout_rate=0.0), tokenizer)
prompts = hm.build_training_prompts(train, tokenizer, templates=COMPACT_TEMPLATES).select(range(steps * batch_size))
rows = hm.tokenize_prompts(prompts, tokenizer)
collate = MetaIDDataCollator(tokenizer)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model.train()
times = []
for step in range(steps):
    batch = collate([rows[i] for i in range(step * batch_size, (step + 1) * batch_size)])
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    times.append(time.perf_counter() - started)
print(statistics.median(times[5:]))
"""


def step_seconds(threads: int, policy: str | None, steps: int, batch_size: int, busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    load = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        command = [sys.executable, "-c", WORKER, str(threads), str(steps), str(batch_size)]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    finally:
        if load is not None:
            load.kill()
            load.wait()
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    timings: dict[tuple[str, bool], list[float]] = {}
    for repeat in range(args.repeats):
        for busy in (False, True):
            for name, threads, policy in SETUPS:
                seconds = step_seconds(threads, policy, args.steps, args.batch_size, busy)
                timings.setdefault((name, busy), []).append(seconds)
                print(f"repeat {repeat + 1}: {name}, {'busy core' if busy else 'idle'}: {seconds * 1000:.1f} ms")
    baseline = {busy: statistics.median(timings[(SETUPS[0][0], busy)]) for busy in (False, True)}
    lines = [
        "| set-up | machine | ms per step (median) | speed vs 1 thread |",
        "|---|---|---|---|",
    ]
    for busy in (False, True):
        for name, _, _ in SETUPS:
            median = statistics.median(timings[(name, busy)])
            state = "one core busy" if busy else "idle"
            lines.append(f"| {name} | {state} | {median * 1000:.1f} | {baseline[busy] / median:.2f}x |")
    table = "\n".join(lines)
    header = (
        f"# Thread set-ups for CPU training\n\n`python benchmarks/thread_policy.py --steps {args.steps} "
        f"--repeats {args.repeats} --batch-size {args.batch_size}` on {os.cpu_count()} cores: tiny T5 "
        "(d_model 128, 2+2 layers), bf16 autocast, compact Beauty prompts; medians over repeats.\n\n"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(header + table + "\n")
    print(table)
    passive = statistics.median(timings[("2 threads, passive", True)])
    print(f"two passive threads beside a busy core vs one thread: {baseline[True] / passive:.2f}x")


if __name__ == "__main__":
    main()
