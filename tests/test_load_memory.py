"""A first load of a mini-ImageNet pickle holds one copy of the split: rows reordered in place, peak
resident memory measured in a fresh subprocess (strict figure, 1.1x, in BENCHMARKS.md; here a generous bound)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fewshot_cam.data.decode import permute_rows_inplace

ROOT = Path(__file__).resolve().parents[1]

MEASURE = """
import sys


def hwm():  # peak RSS of this process image, bytes (ru_maxrss would inherit the parent's peak across exec)
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))


from pathlib import Path
from fewshot_cam.data.datasets import load_split
before = hwm()
split = load_split("mini-imagenet", Path(sys.argv[1]), "test")
after = hwm()
print((after - before) / split.images.nbytes, split.images.shape[0])
"""


@pytest.mark.parametrize("subset", [False, True], ids=["all-rows", "some-rows"])
def test_permute_rows_inplace_is_fancy_indexing(subset):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (50, 2, 2, 3), dtype=np.uint8)
    perm = rng.permutation(50)[: 30 if subset else 50]
    expected = array[perm]
    out = permute_rows_inplace(array, perm)
    np.testing.assert_array_equal(out, expected)
    assert np.shares_memory(out, array)  # no second copy


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc")
def test_first_load_peak_is_one_copy(tmp_path):
    n, classes = 3000, 10  # 63 MB of uint8 at 84 x 84
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 84, 84, 3), dtype=np.uint8)
    class_dict = {f"n{c:08d}": list(range(c, n, classes)) for c in range(classes)}  # interleaved: a real reorder
    with open(tmp_path / "mini-imagenet-cache-test.pkl", "wb") as f:
        pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=4)
    del images
    env = {**os.environ, "FEWSHOT_CAM_CACHE": "off", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path)], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    ratio, count = float(out[0]), int(out[1])
    assert count == n
    assert ratio < 1.5, f"first load peaked at {ratio:.2f}x the split's size"
