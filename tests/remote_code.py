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


# A saved folder asked for five items after a history (JSON), with hf_metaid blocked: {"module", "recs"}.
REMOTE_RECOMMEND = """
import json, sys
sys.meta_path.insert(0, type("Block", (), {"find_spec": staticmethod(
    lambda name, path=None, target=None: (_ for _ in ()).throw(ImportError(name)) if name.split(".")[0] == "hf_metaid"
    else None)})())
sys.path = [p for p in sys.path if not p.endswith("src")]
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
folder, history = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
print(json.dumps({"module": type(model).__module__, "recs": model.recommend(tok, user="u1", history=history, k=5)}))
"""
