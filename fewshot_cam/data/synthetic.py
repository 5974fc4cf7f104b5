"""The built-in benchmark ``synthetic``: procedurally drawn objects on textured backgrounds, no download.

Each of the 100 classes is one combination of a colour family (8), a shape family (8) and a surface
pattern (4), e.g. ``c017-blue-star-checker``; images vary in position, scale, rotation, aspect,
a smooth warp, colour and lighting. Every image also has a background family (n_backgrounds of them:
a texture type, noise / gradient / stripes / blobs, with its own colours and scale) and a ground-truth
foreground mask.

**Planted background shortcut.** In the ``train`` split, class ``c`` is drawn on its own background
family ``class_background(c)`` with probability ``shortcut_rate`` (else on a uniformly random family),
so a model can partly classify base classes from the background alone. In ``val`` and ``test`` the
background family is drawn uniformly, independently of the class, so that shortcut does not transfer
to novel classes. The expected agreement in train is ``rate + (1 - rate) / n_backgrounds``; in val/test
it is ``1 / n_backgrounds``.

**Planted truths for the background analysis** (``VARIANTS``, each also a dataset name):
``objects="random"`` draws every image's colour family, shape and pattern at random, independently of
its class, in every split (the object carries no class information); ``novel_backgrounds="class"``
puts every val/test class on its own family, as train's shortcut does at rate 1 (backgrounds follow
the class in the novel classes too). ``synthetic-control-bg`` combines both with ``shortcut_rate`` 1:
only the background tells classes apart, so a model trained on it is a background learner and the
analysis must say so. ``synthetic-control-fg`` has ``shortcut_rate`` 0 and random novel backgrounds:
only the object tells classes apart (a foreground learner). The random objects come from a second
generator ``[seed, split_id, class_id, 1]``, so every other draw (and so every background and pose)
is the same as in the default benchmark.

Determinism: image ``i`` of class ``c`` depends only on (seed, split, c, i) and the config, through
``np.random.default_rng([seed, split_id, class_id])``; the class table does not depend on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fewshot_cam.data import synthetic_draw as draw
from fewshot_cam.data.split import SPLITS, Split
from fewshot_cam.errors import UserError, check_ranges

_CLASS_TABLE_SEED = 20210801  # fixed: class identities never change with SynthConfig.seed


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the built-in benchmark."""

    seed: int = 0
    """Seeds every image (not the class table): same seed, identical arrays."""
    image_size: int = 32
    """Side of the square images in pixels; scenes are identical across sizes up to resolution."""
    images_per_class: int = 60
    """Images in each class of every split (60: 3840 train, 960 val, 1200 test images)."""
    classes: tuple[int, int, int] = (64, 16, 20)
    """Number of classes in train, val and test (disjoint; at most 256 in all)."""
    shortcut_rate: float = 0.9
    """In train, probability that an image of class c lies on c's own background family."""
    n_backgrounds: int = 16
    """Number of background families (texture type x colour x scale)."""
    objects: str = "class"
    """"class": each class's own colour, shape and pattern; "random": every image's drawn at random
    (in every split), so the object carries no class information."""
    novel_backgrounds: str = "random"
    """Backgrounds of val/test: "random" (independent of the class) or "class" (class c always on
    ``class_background(c)``: the background follows the class in the novel classes)."""

    def __post_init__(self) -> None:
        check_ranges("", self, {"seed": (0, 2**63 - 1), "image_size": (8, 4096), "images_per_class": (1, None),
                                "shortcut_rate": (0, 1), "n_backgrounds": (1, None)})


@dataclass(frozen=True)
class ClassSpec:
    """One class: global id (also its name prefix) and the attributes that define its objects."""

    id: int
    colour: str
    shape: str
    pattern: str

    @property
    def name(self) -> str:
        return f"c{self.id:03d}-{self.colour}-{self.shape}-{self.pattern}"


@dataclass(frozen=True)
class SynthArrays:
    """A generated split with the hidden variables tests and analyses need.

    images: (N, S, S, 3) uint8; masks: (N, S, S) bool; labels: (N,) int64 into ``classes``;
    backgrounds: (N,) background family of each image; class_backgrounds: (C,) the family each
    class is tied to in train (also defined, but unused, for val/test classes).
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    backgrounds: np.ndarray
    classes: tuple[ClassSpec, ...]
    class_backgrounds: np.ndarray


def class_table(cfg: SynthConfig) -> dict[str, tuple[ClassSpec, ...]]:
    """Classes of each split: distinct (colour, shape, pattern) combinations, balanced, in a fixed shuffle."""
    if min(cfg.classes) < 1 or sum(cfg.classes) > len(draw.COLOURS) * len(draw.SHAPES) * len(draw.PATTERNS):
        raise UserError(f"synthetic classes {cfg.classes}: each split needs >= 1 and at most 256 in all")
    colours, shapes, patterns = list(draw.COLOURS), list(draw.SHAPES), list(draw.PATTERNS)
    k = np.arange(sum(cfg.classes))
    # each run of 64 ids holds every (colour, shape) pair once; the pattern steps on every 64 ids, so
    # all triples are distinct and each attribute is about equally common
    combos = np.stack([k % 8, (k % 8 + (k // 8) % 8) % 8, (k // 64 + k) % 4], 1)
    combos = combos[np.random.default_rng(_CLASS_TABLE_SEED).permutation(len(k))]
    specs = [ClassSpec(i, colours[c], shapes[s], patterns[p]) for i, (c, s, p) in enumerate(combos)]
    bounds = np.cumsum((0,) + tuple(cfg.classes))
    return {name: tuple(specs[a:b]) for name, a, b in zip(SPLITS, bounds[:-1], bounds[1:])}


def class_background(class_id: int, cfg: SynthConfig) -> int:
    """The background family a train class is tied to (with probability ``shortcut_rate``)."""
    return class_id % cfg.n_backgrounds


def _check(split: str, cfg: SynthConfig) -> None:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (valid: {', '.join(SPLITS)})")
    if cfg.image_size < 8 or cfg.images_per_class < 1 or cfg.n_backgrounds < 1:
        raise UserError(f"synthetic config {cfg}: image_size >= 8, images_per_class >= 1, n_backgrounds >= 1")
    if not 0.0 <= cfg.shortcut_rate <= 1.0:
        raise UserError(f"synthetic shortcut_rate {cfg.shortcut_rate} is not in [0, 1]")
    if cfg.objects not in ("class", "random") or cfg.novel_backgrounds not in ("random", "class"):
        raise UserError(f"synthetic objects {cfg.objects!r} (class|random) / novel_backgrounds "
                        f"{cfg.novel_backgrounds!r} (random|class)")


def _objects(spec: ClassSpec, split: str, cfg: SynthConfig, pose: dict, rng: np.random.Generator):
    """Premultiplied colour (n, S, S, 3) and coverage (n, S, S) of one class's objects: the class's own
    attributes, or (``objects="random"``) attributes drawn per image from a second generator."""
    n, size = cfg.images_per_class, cfg.image_size
    if cfg.objects == "class":
        colours = draw.object_colours(rng, draw.COLOURS[spec.colour], n)
        return draw.render_object(spec.shape, spec.pattern, pose, colours, size)
    other = np.random.default_rng([cfg.seed, SPLITS.index(split), spec.id, 1])
    hue = np.array(list(draw.COLOURS.values()))[other.integers(len(draw.COLOURS), size=n)]
    shape = other.integers(len(draw.SHAPES), size=n)
    pattern = other.integers(len(draw.PATTERNS), size=n)
    colours = draw.object_colours(rng, hue, n)  # the same draws from rng as for a class's own hue
    premult, coverage = np.zeros((n, size, size, 3)), np.zeros((n, size, size))
    for s, p in {(int(a), int(b)) for a, b in zip(shape, pattern)}:
        sel = (shape == s) & (pattern == p)
        part = {k: v[sel] for k, v in pose.items()}
        premult[sel], coverage[sel] = draw.render_object(list(draw.SHAPES)[s], list(draw.PATTERNS)[p], part,
                                                         colours[sel], size)
    return premult, coverage


def _draw_class(spec: ClassSpec, split: str, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (n, S, S, 3) uint8, masks (n, S, S) bool and background families (n,) of one class."""
    n, size = cfg.images_per_class, cfg.image_size
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split), spec.id])
    tied = rng.random(n) < cfg.shortcut_rate
    families = rng.integers(cfg.n_backgrounds, size=n)
    if split == "train":
        families = np.where(tied, class_background(spec.id, cfg), families)
    elif cfg.novel_backgrounds == "class":
        families = np.full(n, class_background(spec.id, cfg))
    pose = draw.object_params(rng, n)
    premult, coverage = _objects(spec, split, cfg, pose, rng)
    bg_params = draw.background_params(rng, n)
    background = draw.render_backgrounds(families, cfg.n_backgrounds, bg_params, size)
    image = premult + (1 - coverage[..., None]) * background
    image += rng.normal(0, 0.03, image.shape)  # sensor noise, drawn last (its size depends on image_size)
    image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image, coverage >= 0.5, families


def generate_arrays(split: str, cfg: SynthConfig = SynthConfig()) -> SynthArrays:
    """Draw every image of one split, with masks and the background family of each image."""
    _check(split, cfg)
    specs = class_table(cfg)[split]
    parts = [_draw_class(spec, split, cfg) for spec in specs]
    return SynthArrays(
        images=np.concatenate([p[0] for p in parts]),
        masks=np.concatenate([p[1] for p in parts]),
        labels=np.repeat(np.arange(len(specs), dtype=np.int64), cfg.images_per_class),
        backgrounds=np.concatenate([p[2] for p in parts]),
        classes=specs,
        class_backgrounds=np.array([class_background(s.id, cfg) for s in specs]),
    )


def generate_split(split: str, cfg: SynthConfig = SynthConfig(), name: str = "synthetic") -> Split:
    """One split of the built-in benchmark as a :class:`Split` (masks filled), named ``name/split``."""
    a = generate_arrays(split, cfg)
    return Split(
        images=a.images, labels=a.labels, class_names=tuple(s.name for s in a.classes), masks=a.masks,
        name=f"{name}/{split}", source=f"built-in (seed {cfg.seed})",
    )


VARIANTS: dict[str, SynthConfig] = {
    "synthetic": SynthConfig(),
    "synthetic-control-bg": SynthConfig(shortcut_rate=1.0, objects="random", novel_backgrounds="class",
                                        n_backgrounds=20),
    "synthetic-control-fg": SynthConfig(shortcut_rate=0.0),
}
"""Dataset name -> benchmark settings. The background control has 20 families so that the 20 test
classes (ids 80-99) each have their own."""


def load_synthetic(split: str, image_size: int, root: str | Path | None = None, variant: str = "synthetic") -> Split:
    """A benchmark of ``VARIANTS`` at ``image_size``; ``root`` is ignored (nothing is read or cached)."""
    return generate_split(split, replace(VARIANTS[variant], image_size=image_size), name=variant)


def write_synthetic(out_dir: str | Path, cfg: SynthConfig = SynthConfig()) -> Path:
    """Write the benchmark as image folders: ``out/{split}/<class>/<i:05d>.png``, masks (0/255) under
    ``out/masks/{split}/<class>/<i:05d>.png``. Readable back with the ``imagefolder`` dataset."""
    from PIL import Image

    from fewshot_cam.progress import progress

    out = Path(out_dir)
    for split in SPLITS:
        s = generate_split(split, cfg)
        for c, idx in enumerate(progress(s.class_indices(), desc=f"write {split}", leave=True)):
            folders = [out / split / s.class_names[c], out / "masks" / split / s.class_names[c]]
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True)
            for i, j in enumerate(idx):
                Image.fromarray(s.images[j]).save(folders[0] / f"{i:05d}.png")
                Image.fromarray(s.masks[j].astype(np.uint8) * 255).save(folders[1] / f"{i:05d}.png")
    return out


__all__ = [
    "SynthConfig", "ClassSpec", "SynthArrays", "VARIANTS", "class_table", "class_background",
    "generate_arrays", "generate_split", "load_synthetic", "write_synthetic",
]
