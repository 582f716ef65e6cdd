"""Running a saved folder's own code in a fresh Python process, as the Hub case does (``trust_remote_code``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_remote(script: str, folder: Path, *args: str) -> dict:
    """Run ``script`` with ``folder`` and ``args`` as its arguments, offline and with its own module cache; return the
    JSON object its last printed line holds (the test fails with the process's error where it fails)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(folder / "modules")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), *args], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
