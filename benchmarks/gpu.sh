#!/usr/bin/env bash
# The GPU benchmark in one command (see benchmarks/gpu.py):
#   benchmarks/gpu.sh OUT_DIR           one NVIDIA GPU, < 8 minutes
#   benchmarks/gpu.sh OUT_DIR --small   toy sizes on any machine (CPU check, ~1-2 min)
# Uses only the machine's jax[cuda], torch, transformers, flax, optax, orbax: nothing is
# installed or downloaded. PYTHON selects the interpreter (default: python3).
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: benchmarks/gpu.sh OUT_DIR [--small] [--budget-s S]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# a hard stop under 8 minutes even if one point hangs (gpu.py stops starting points at 420 s)
exec timeout --kill-after=10 470 "${PYTHON:-python3}" "$here/gpu.py" "$@"
