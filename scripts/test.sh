#!/usr/bin/env bash
# Set up .venv, install hf_metaid with its test extras, lint, and run the tests (the README's test command; CI).
set -euo pipefail
. "$(dirname "$0")/setup.sh" "[test]"
ruff check .
ruff format --check .
python -m pytest "$@"
