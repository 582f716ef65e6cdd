#!/usr/bin/env bash
# Sourced by test.sh and demo.sh: create .venv (Python 3.11) if needed, activate it, install hf_metaid.
# $1: the pip extras to install, e.g. "[test]" (may be empty).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned to the tested release: it stays the CPU build where pip finds one (a local wheel folder, or a
# .venv already holding torch from https://download.pytorch.org/whl/cpu); left to the package's requirements, pip
# would take the default wheel, on Linux a multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".${1:-}"
