#!/usr/bin/env bash
# Set up a virtual environment (Python 3.11), install hf_metaid and run the offline demo on the embedded Beauty data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e .
hf-metaid demo "$@"
