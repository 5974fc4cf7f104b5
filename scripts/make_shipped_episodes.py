"""Regenerate the frozen evaluation episodes shipped in ``fewshot_cam/episodes_data/`` (package data).

    .venv/bin/python scripts/make_shipped_episodes.py [--out fewshot_cam/episodes_data] [--episodes 2000] [--seed 0]

Writes 5-way 1-shot and 5-way 5-shot (15 queries) files for the test split of the built-in
``synthetic`` benchmark (default SynthConfig) and of miniImageNet (Ravi & Larochelle split). Only
class names and sizes are needed (the fingerprint holds nothing else), so no images are read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_cam.data.episode_file import SHIPPED_DIR
from fewshot_cam.data.episodes import save_episodes_for_classes
from fewshot_cam.data.synthetic import SynthConfig, class_table

# Ravi & Larochelle (2017) miniImageNet test classes, 600 images each
MINI_IMAGENET_TEST = (
    "n01930112", "n01981276", "n02099601", "n02110063", "n02110341", "n02116738", "n02129165",
    "n02219486", "n02443484", "n02871525", "n03127925", "n03146219", "n03272010", "n03544143",
    "n03775546", "n04146614", "n04149813", "n04418357", "n04522168", "n07613480",
)


def test_splits() -> dict[str, tuple[list[str], list[int]]]:
    """dataset -> (sorted class names, class sizes) of its test split."""
    cfg = SynthConfig()
    synthetic = sorted(spec.name for spec in class_table(cfg)["test"])
    return {
        "synthetic": (synthetic, [cfg.images_per_class] * len(synthetic)),
        "mini-imagenet": (sorted(MINI_IMAGENET_TEST), [600] * len(MINI_IMAGENET_TEST)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--episodes", "--n", type=int, default=2000, help="episodes per file (--n: old spelling)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for dataset, (names, sizes) in test_splits().items():
        for shots in (1, 5):
            path = args.out / f"{dataset}-test-5way-{shots}shot-15q.json"
            save_episodes_for_classes(path, dataset, "test", names, sizes, 5, shots, 15, args.episodes, args.seed)
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
