"""Decode throughput and cache speed-up of ``load_split`` on a generated fake dataset.

    python scripts/bench_data_cache.py --format imagefolder --images 6000 --size 84
    python scripts/bench_data_cache.py --format mini-pickle --images 6000 --size 84

Prints the time of the first load (decode + cache write) and the second load (cache hit), in
seconds and images per second. Everything lives in a temporary folder, cache included.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def write_fake(root: Path, fmt: str, n: int, source_size: int) -> str:
    """``n`` smooth random images in 20 classes, as an image folder of JPEGs or a mini-ImageNet pickle."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    images = np.asarray([np.asarray(Image.fromarray(b).resize((source_size,) * 2)) for b in blocks])
    names = [f"n{i % 20:03d}" for i in range(n)]
    if fmt == "mini-pickle":
        class_dict = {c: [i for i, m in enumerate(names) if m == c] for c in sorted(set(names))}
        with open(root / "mini-imagenet-cache-train.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=4)
        return "mini-imagenet"
    for i, (image, name) in enumerate(zip(images, names)):
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "train" / name / f"{i:06d}.jpg", quality=90)
    return "imagefolder"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=["imagefolder", "mini-pickle"], default="imagefolder")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", type=int, default=84, help="image size to load at")
    parser.add_argument("--source-size", type=int, default=84, help="size of the stored images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FEWSHOT_CAM_CACHE"] = str(Path(tmp) / "cache")
        from fewshot_cam.data.datasets import load_split

        dataset = write_fake(Path(tmp), args.format, args.images, args.source_size)
        for run in ("first load (decode + cache write)", "second load (cache hit)"):
            start = time.perf_counter()
            split = load_split(dataset, tmp, "train", args.size)
            np.asarray(split.images).sum()  # touch every page of a memory-mapped hit
            seconds = time.perf_counter() - start
            print(f"{args.format} {args.images} images {args.source_size}->{args.size} px, {run}: "
                  f"{seconds:.3f} s, {args.images / seconds:,.0f} images/s")


if __name__ == "__main__":
    main()
