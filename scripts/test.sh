#!/usr/bin/env bash
# Set up a virtual environment (Python 3.11), install hf_metaid with its test extras, lint, and run the tests.
# Used by the README's test command and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
ruff check .
ruff format --check .
python -m pytest "$@"
