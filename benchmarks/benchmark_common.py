"""What the benchmark scripts share: the CPU model and machine line every results file quotes with its timings, the
synthetic power-law graph of the scale checks, and the results file."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform module knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_and_cores() -> str:
    """``"<model>, N cores"``."""
    return f"{cpu_model()}, {os.cpu_count()} cores"


def machine(note: str = "") -> str:
    """The machine line of a timing table: CPU, cores (``note`` after them), load at start, library versions."""
    import torch

    import hf_metaid

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu_model()}, {os.cpu_count()} cores{note}, load average {load:.2f} at start; "
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"hf_metaid {hf_metaid.__version__}"
    )


def power_law_interactions(num_interactions: int, seed: int = 0, exponent: float = 1.0):
    """A ``datasets.Dataset`` (``user``, ``item``) of Zipf-distributed users and items, ``N / 20`` of each."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    count = max(num_interactions // 20, 2)
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    weights /= weights.sum()
    users = rng.choice(count, size=num_interactions, p=weights)
    items = rng.permutation(count)[rng.choice(count, size=num_interactions, p=weights)]  # popularity ≠ activity
    columns = {
        "user": pc.binary_join_element_wise("u", pa.array(users).cast(pa.string()), ""),
        "item": pc.binary_join_element_wise("i", pa.array(items).cast(pa.string()), ""),
    }
    return datasets.Dataset(pa.table(columns))


def write_report(path: Path, lines: list[str], commands: Iterable[str] = ()) -> None:
    """Write a results file (its folder made if needed): ``lines``, then the commands that regenerate it (sorted,
    indented as code) where given; print it."""
    commands = sorted(set(commands))
    text = "\n".join(
        [*lines, *(["", "Commands:", "", *(f"    {command}" for command in commands), ""] if commands else [])]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text)
