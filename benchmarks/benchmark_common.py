"""What the benchmark scripts share: the CPU model every results file quotes with its timings, and the results file."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path


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
