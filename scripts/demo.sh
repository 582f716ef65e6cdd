#!/usr/bin/env bash
# Set up .venv, install hf_metaid, and run the offline demo on the embedded Beauty data (the README's main command).
set -euo pipefail
. "$(dirname "$0")/setup.sh" ""
hf-metaid demo "$@"
