"""What machine a benchmark ran on: the CPU model that every results file quotes with its timings."""

from __future__ import annotations

import os
import platform
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
