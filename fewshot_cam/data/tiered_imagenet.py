"""tiered-ImageNet (Ren et al. 2018) from a local root; files in ``root`` or ``root/tiered-imagenet``.

Two layouts:

- ``png-pkl`` (Ren et al., as learn2learn downloads it): ``{split}_images_png.pkl``, a list of
  PNG-encoded byte arrays (not grouped by class), and ``{split}_labels.pkl`` with ``label_specific``,
  ``label_general``, ``label_specific_str``, ``label_general_str`` (Python 2 pickles: keys may be bytes).
- ``npz``: ``{split}_images.npz`` (key ``images``, (N, H, W, 3) uint8 stored BGR) with
  ``{split}_labels.pkl`` (key ``labels``, or ``label_specific``).

Class names are ``label_specific_str[label]`` when present, else the label id as a string.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from fewshot_cam.data.checks import check_image_array, integer_array
from fewshot_cam.data.decode import Source, decode_image, decode_split, load_pickle, resize_array, str_keys, to_str
from fewshot_cam.data.split import SPLITS, Split
from fewshot_cam.errors import UserError

NAME = "tiered-imagenet"
IMAGE_FILES = {"png-pkl": "{}_images_png.pkl", "npz": "{}_images.npz"}


def folders(root: Path) -> list[Path]:
    return [root / "tiered-imagenet", root]


def detect_layout(root: Path) -> str:
    """'png-pkl' or 'npz', whichever image files ``root`` (or ``root/tiered-imagenet``) holds."""
    for layout, pattern in IMAGE_FILES.items():
        if any((d / pattern.format(s)).is_file() for d in folders(root) for s in SPLITS):
            return layout
    raise UserError(
        "no tiered-ImageNet found: expected {split}_images_png.pkl or {split}_images.npz with "
        "{split}_labels.pkl in the root or in root/tiered-imagenet", root)


def locate(root: Path, split: str) -> Source:
    layout = detect_layout(root)
    name = IMAGE_FILES[layout].format(split)
    folder = next((d for d in folders(root) if (d / name).is_file()), None)
    if folder is None:
        raise UserError(f"split '{split}' missing: file {name} not found", root)
    labels = folder / f"{split}_labels.pkl"
    if not labels.is_file():
        raise UserError(f"split '{split}' missing: file not found", labels)
    return Source(NAME, layout, root, split, (folder / name, labels))


def class_names_per_image(path: Path) -> list[str]:
    """The class name of every image, in file order, from a ``{split}_labels.pkl``."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise UserError(f"expected a dict of labels, got {type(data).__name__}", path)
    data = str_keys(data)
    key = next((k for k in ("label_specific", "labels") if k in data), None)
    if key is None:
        raise UserError(f"no 'label_specific' or 'labels' key (keys: {', '.join(sorted(data))})", path)
    labels = integer_array(data[key], key, path)
    if len(labels) and labels.min() < 0:
        raise UserError(f"{key} holds {labels.min()}, a negative label", path)
    if "label_specific_str" not in data:
        return [str(label) for label in labels]
    strings = data["label_specific_str"]
    if not isinstance(strings, (list, tuple, np.ndarray)) or any(
        not isinstance(n, (str, bytes, np.str_, np.bytes_)) for n in strings
    ):
        raise UserError("label_specific_str must be a list of class names (str or bytes)", path)
    names = [to_str(n) for n in strings]
    if len(labels) and labels.max() >= len(names):
        raise UserError(f"label ids up to {labels.max()} but only {len(names)} label_specific_str", path)
    return [names[label] for label in labels]


def check_png_list(images: object, path: Path) -> None:
    """A list (or 1-D object array) of PNG files as bytes or uint8 arrays; UserError otherwise."""
    listed = (
        isinstance(images, (list, tuple))
        or isinstance(images, np.ndarray)
        and images.dtype == object
        and images.ndim == 1
    )
    if not listed:
        raise UserError(f"expected a list of PNG byte arrays, got {type(images).__name__}", path)
    for i, b in enumerate(images):
        if not isinstance(b, (bytes, bytearray)) and not (isinstance(b, np.ndarray) and b.dtype == np.uint8):
            kind = f"an array of {b.dtype}" if isinstance(b, np.ndarray) else type(b).__name__
            raise UserError(f"image {i} is {kind}, not PNG bytes", path)


def load_npz_images(path: Path) -> np.ndarray:
    try:
        with np.load(path) as npz:
            images = npz["images"]
    except KeyError:
        raise UserError("no 'images' array in the npz", path) from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise UserError(f"corrupt or truncated npz ({err})", path) from None
    return check_image_array(images, "images", path)


def read(source: Source, image_size: int) -> Split:
    images_path, labels_path = source.files
    names = class_names_per_image(labels_path)
    if source.layout == "png-pkl":
        images = load_pickle(images_path)
        check_png_list(images, images_path)
        fn = lambda i: decode_image(images[i], image_size)  # noqa: E731
    else:
        images = load_npz_images(images_path)
        fn = lambda i: resize_array(np.ascontiguousarray(images[i, :, :, ::-1]), image_size)  # noqa: E731  BGR -> RGB
    if len(images) != len(names):
        raise UserError(f"{len(images)} images but {len(names)} labels in {labels_path}", images_path)
    return decode_split(source, names, range(len(names)), fn, lambda i: f"{images_path} [image {i}]", image_size)


def class_sizes(source: Source) -> dict[str, int]:
    return dict(Counter(class_names_per_image(source.files[1])))
