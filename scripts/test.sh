#!/usr/bin/env bash
# Lint with ruff, then run the test suite (setting up .venv first if needed). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
.venv/bin/python -m ruff check fewshot_cam tests scripts  # lint first (settings in pyproject.toml); ruff may live in the shared base
exec .venv/bin/python -m pytest -q -n 2 "$@"
