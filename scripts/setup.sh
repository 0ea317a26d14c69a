#!/usr/bin/env bash
# Create .venv with the pinned development environment (constraints.txt) and w2vbert installed editable.
# Usage: bash scripts/setup.sh            (idempotent: a second run only checks)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so no resolver ever reaches for the multi-GB CUDA build.
.venv/bin/python -m pip install -q -c constraints.txt torch
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
.venv/bin/python -c "import w2vbert, torch; print('w2vbert', w2vbert.__version__, 'with torch', torch.__version__)"
