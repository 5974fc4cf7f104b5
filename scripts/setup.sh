#!/usr/bin/env bash
# Set up fewshot-cam from nothing: a virtual environment in the checkout (.venv) with a known-good
# torch/torchvision pair, learn2learn built from regenerated Cython sources, and the package itself
# (editable, with its test extras). Every version comes from constraints.txt.
#
# The third-party packages (about 6 GB, mostly torch's CUDA libraries) go into one shared base
# environment per machine, keyed by constraints.txt, this script and the Python version:
# ${FEWSHOT_CAM_BASE:-~/.cache/fewshot-cam/base-<key>}. The checkout's .venv is a small venv that
# sees the base through a .pth file and holds only fewshot-cam. So the first set-up on a machine takes
# about 3 minutes, and a fresh clone after that (CI, a second checkout) about 10 seconds.
# FEWSHOT_CAM_BASE=none installs everything into .venv itself.
# Idempotent: a second run with unchanged inputs returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${FEWSHOT_CAM_VENV:-.venv}
STAMP="$VENV/.fewshot-cam-setup"
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
want=$( (cat constraints.txt setup.cfg scripts/setup.sh; echo "$pyver ${FEWSHOT_CAM_BASE:-}") | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    exit 0
fi
key=$( (cat constraints.txt scripts/setup.sh; echo "$pyver") | sha256sum | cut -c1-16)
BASE=${FEWSHOT_CAM_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/fewshot-cam/base-$key}
[ "$BASE" = none ] && BASE=$VENV
pipq=(-m pip install -q --disable-pip-version-check -c constraints.txt)

build_base() {  # every pinned third-party package into $BASE (a venv)
    local py="$BASE/bin/python"
    echo "fewshot-cam set-up: installing the pinned packages into $BASE (about 3 minutes, once per machine)" >&2
    [ -x "$py" ] || "$PYTHON" -m venv "$BASE"
    "$py" -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
    # torch first, explicitly pinned: an unpinned resolve could pick a torch that no torchvision matches.
    "$py" "${pipq[@]}" torch torchvision
    # Everything else that constraints.txt pins (it is the full, tested freeze), except learn2learn.
    grep -v -e '^learn2learn==' -e '^#' -e '^$' constraints.txt > "$BASE/requirements.txt"
    "$py" "${pipq[@]}" -r "$BASE/requirements.txt"
    if ! "$py" -c "import learn2learn" >/dev/null 2>&1; then
        # learn2learn 0.2.0 is an sdist whose pre-generated C files include longintrepr.h, gone since
        # Python 3.11. Regenerate them from its .pyx sources with Cython 3, then build without
        # isolation. Only learn2learn itself is fetched as source (not its build tools: --no-binary
        # :all: would compile Cython and setuptools from source too, minutes of CPU).
        local work
        work=$(mktemp -d)
        "$py" -m pip download -q --disable-pip-version-check --no-deps --no-binary learn2learn \
            -c constraints.txt learn2learn==0.2.0 -d "$work"
        tar xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
        local src="$work/learn2learn-0.2.0"
        rm -rf "$src/.eggs"
        "$py" -m cython -3 "$src"/learn2learn/data/*.pyx
        # Its gsutil and qpth requirements serve dataset downloads and MetaOptNet, which we never use.
        sed -i "/'gsutil'/d; /'qpth/d" "$src/setup.py"
        "$py" "${pipq[@]}" --no-build-isolation "$src"
        rm -rf "$work"
    fi
    "$py" -c "import torch, torchvision, learn2learn"
}

if [ "$BASE" != "$VENV" ]; then
    mkdir -p "$(dirname "$BASE")"
    exec 9>"$BASE.lock"
    flock 9  # two checkouts setting up at once: the second waits for the first's base
    if [ ! -f "$BASE/.complete" ]; then
        rm -rf "$BASE"  # a base left half-built by a killed set-up is rebuilt from scratch
        build_base
        touch "$BASE/.complete"
    fi
    flock -u 9
    # A small venv without its own pip: it uses the base's pip, setuptools and packages via the .pth.
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --without-pip "$VENV"
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    base_site=$("$BASE/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$base_site" > "$site/_fewshot_cam_base.pth"
else
    build_base
fi
echo "fewshot-cam set-up: installing fewshot-cam into $VENV" >&2
"$VENV/bin/python" "${pipq[@]}" --no-build-isolation -e ".[test,learn2learn,tensorboard]"
"$VENV/bin/python" -c "import torch, torchvision, learn2learn, fewshot_cam" 2>/dev/null
echo "$want" > "$STAMP"
echo "fewshot-cam set-up: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))" >&2
