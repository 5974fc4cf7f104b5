"""Time ``fewshot-cam data boxes`` on a generated miniImageNet-shaped set, and extrapolate.

    PYTHONPATH=. python scripts/bench_boxes.py --classes 5 --files 50 --per-class 30 --workers 2

Writes (in a temporary folder) an ImageNet train folder of ``classes`` x ``files`` JPEGs of ImageNet-like
sizes (about 500 x 375), VOC XML boxes for 40% of them, and the same split twice: a Ravi & Larochelle csv
folder (matched by name: only the named files are decoded) and a learn2learn pickle (matched by content:
every file of a class is decoded). Prints each run's time, its time per decoded ImageNet file, and that
rate extrapolated to miniImageNet's 100 classes x about 1,300 files.
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FULL_FILES = 100 * 1300


def write_world(root: Path, classes: int, files: int, per_class: int) -> None:
    rng = np.random.default_rng(0)
    (root / "mini" / "images").mkdir(parents=True)
    rows, class_dict, image_data = [["filename", "label"]], {}, []
    for c in range(classes):
        wnid = f"n{c + 1:08d}"
        (root / "train" / wnid).mkdir(parents=True)
        for k in range(1, files + 1):
            w, h = int(rng.integers(400, 520)), int(rng.integers(300, 400))
            image = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
                (w, h), Image.Resampling.BICUBIC
            )
            image.save(root / "train" / wnid / f"{wnid}_{k * 7}.JPEG", quality=90)
            if k <= per_class:
                small = image.resize((84, 84), Image.Resampling.BOX)
                small.save(root / "mini" / "images" / f"{wnid}{k:08d}.jpg", quality=95)
                rows.append([f"{wnid}{k:08d}.jpg", wnid])
                class_dict.setdefault(wnid, []).append(len(image_data))
                image_data.append(np.asarray(small))
            if rng.random() < 0.4:
                (root / "xml" / wnid).mkdir(parents=True, exist_ok=True)
                (root / "xml" / wnid / f"{wnid}_{k * 7}.xml").write_text(
                    f"<annotation><size><width>{w}</width><height>{h}</height></size><object><name>{wnid}</name>"
                    f"<bndbox><xmin>{w // 4}</xmin><ymin>{h // 4}</ymin><xmax>{w // 2}</xmax><ymax>{h // 2}</ymax>"
                    f"</bndbox></object></annotation>")
    with open(root / "mini" / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    (root / "pkl").mkdir()
    with open(root / "pkl" / "mini-imagenet-cache-test.pkl", "wb") as f:
        pickle.dump({"image_data": np.stack(image_data), "class_dict": class_dict}, f, protocol=4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--files", type=int, default=100, help="ImageNet files per class")
    parser.add_argument("--per-class", type=int, default=60, help="few-shot images per class (<= files)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["FEWSHOT_CAM_CACHE"] = str(root / "cache")
        import fewshot_cam.cli.data  # noqa: F401  (imports are not timed)
        from fewshot_cam.cli import main as cli
        from fewshot_cam.data.datasets import load_split

        write_world(root, args.classes, args.files, args.per_class)
        for layout, decoded in (("mini", args.classes * args.per_class), ("pkl", args.classes * args.files)):
            argv = ["data", "boxes", "--dataset", "mini-imagenet", "--root", str(root / layout), "--imagenet-train",
                    str(root / "train"), "--boxes", str(root / "xml"), "--split", "test", "--out",
                    str(root / f"{layout}.npz"), "--workers", str(args.workers)]
            load_split("mini-imagenet", root / layout, "test", 84)  # the split's own decode is not timed
            start = time.perf_counter()
            assert cli(argv) == 0
            seconds = time.perf_counter() - start
            full = seconds / decoded * (FULL_FILES if layout == "pkl" else 100 * 600)
            print(
                f"{layout}: {seconds:.2f} s for {decoded} decoded ImageNet files "
                f"({1e3 * seconds / decoded:.2f} ms/file); "
                f"extrapolated to miniImageNet's 100 classes: {full / 60:.1f} min"
            )


if __name__ == "__main__":
    main()
