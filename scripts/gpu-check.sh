#!/usr/bin/env bash
# The GPU check (issue 20): scripts/gpu-check.sh [--dry-run] [--out DIR] [--stages a,b,...] [--work DIR]
# Runs with the machine's own python3 (torch >= 2.11; nothing installed, no network, no learn2learn),
# or .venv's when there is one; the package comes from this working tree. See BENCHMARKS.md "GPU check".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$python" -m fewshot_cam.bench "$@"
