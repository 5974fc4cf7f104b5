#!/usr/bin/env bash
# Set up fewshot-cam from nothing: a virtual environment in the checkout (.venv), a known-good
# torch/torchvision pair, learn2learn built from regenerated Cython sources, and the package itself
# (editable, with its test extras). Every version comes from constraints.txt.
# Idempotent: a second run with unchanged inputs returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${FEWSHOT_CAM_VENV:-.venv}
STAMP="$VENV/.fewshot-cam-setup"
want=$(cat constraints.txt setup.cfg scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
echo "fewshot-cam set-up: installing into $VENV (torch takes about 2 minutes the first time)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip=("$py" -m pip install -q --disable-pip-version-check -c constraints.txt)
"$py" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
# torch first, explicitly pinned: an unpinned resolve could pick a torch that no torchvision matches.
"${pip[@]}" torch torchvision
"${pip[@]}" Cython numpy gym requests
if ! "$py" -c "import learn2learn" >/dev/null 2>&1; then
    # learn2learn 0.2.0 is an sdist whose pre-generated C files include longintrepr.h, gone since
    # Python 3.11. Regenerate them from its .pyx sources with Cython 3, then build without isolation.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$py" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        -c constraints.txt learn2learn==0.2.0 -d "$work"
    tar xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
    src="$work/learn2learn-0.2.0"
    rm -rf "$src/.eggs"
    "$VENV/bin/cython" -3 "$src"/learn2learn/data/*.pyx
    # Its gsutil and qpth requirements serve dataset downloads and MetaOptNet, which we never use.
    sed -i "/'gsutil'/d; /'qpth/d" "$src/setup.py"
    "${pip[@]}" --no-build-isolation "$src"
fi
"${pip[@]}" -e ".[test,learn2learn,tensorboard]"
"$py" -c "import torch, torchvision, learn2learn, fewshot_cam" 2>/dev/null
echo "$want" > "$STAMP"
echo "fewshot-cam set-up: done ($("$py" -c 'import torch; print("torch", torch.__version__)'))" >&2
