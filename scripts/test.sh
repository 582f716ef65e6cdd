#!/usr/bin/env bash
# Set up .venv, install hf_metaid with its test extras, lint, and run the tests (the README's test command; CI).
# Without arguments, the tests marked numerics (rankings and floats from two code paths, processes or saved files)
# then run again under other CPU kernels (torch's, MKL's and oneDNN's): the portable ones, and AVX2 on an AVX-512 CPU
# (an AVX2 CPU ran those first). A comparison that holds only with this CPU's rounding fails here, not on a
# user's machine. Arguments go to pytest alone, without the reruns.
set -euo pipefail
. "$(dirname "$0")/setup.sh" "[test]"
ruff check .
ruff format --check .
python -m pytest "$@"
[ $# -eq 0 ] || exit 0

native=$(python -c "import torch; print(torch.backends.cpu.get_cpu_capability())")
kernels=("ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41")
if [ "$native" = AVX512 ]; then
    kernels+=("ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2")
fi
for settings in "${kernels[@]}"; do
    echo "numerics tests with $settings (this CPU: $native)"
    env $settings python -m pytest -m numerics -q
done
