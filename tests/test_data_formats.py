"""Dataset formats read from tiny fake datasets in the exact on-disk layouts.

Oracles: learn2learn's own readers (mini-ImageNet cache pickles, tiered-ImageNet png pickles), PIL
decoding the same files, the arrays the fixtures wrote, and engineer B's synthetic generator.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from fewshot_cam.data import imagefolder
from fewshot_cam.data.datasets import detect_layout, load_split
from fewshot_cam.learn2learn_adapter import l2l_mini_imagenet, l2l_tiered_imagenet

BILINEAR = Image.Resampling.BILINEAR


def pil_decode(path_or_bytes, size: int | None = None) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    im = Image.open(src).convert("RGB")
    return np.asarray(im if size is None or im.size == (size, size) else im.resize((size, size), BILINEAR))


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def by_class(split) -> dict[str, np.ndarray]:
    return {name: split.images[ix] for name, ix in zip(split.class_names, split.class_indices())}


def dump(obj, path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


# ---------------------------------------------------------------- mini-ImageNet, cache pickles
@pytest.fixture(scope="module")
def mini_pickle(tmp_path_factory):
    """learn2learn cache pickles: 4 classes x 5 rows (3 classes in test), rows of a class scattered."""
    root = tmp_path_factory.mktemp("mini-pickle")
    rng = np.random.default_rng(0)
    for mode, names in [("train", ["n03", "n01", "n04", "n02"]), ("validation", ["n09", "n07", "n08", "n06"]),
                        ("test", ["n12", "n11", "n10"])]:
        rows = rng.permutation(5 * len(names)).reshape(len(names), 5)
        data = {"image_data": rng.integers(0, 256, (rows.size, 84, 84, 3), dtype=np.uint8),
                "class_dict": {n: list(r) for n, r in zip(names, rows)}}
        dump(data, root / f"mini-imagenet-cache-{mode}.pkl")
    return root


@pytest.mark.parametrize("split", ["train", "val"])
def test_mini_pickle_matches_learn2learn(mini_pickle, split):
    ours = load_split("mini-imagenet", mini_pickle, split)
    ref = l2l_mini_imagenet(mini_pickle, split)
    assert ours.class_names == tuple(sorted(ref.class_idx)) and len(ours.images) == len(ref)
    assert (np.diff(ours.labels) >= 0).all()  # grouped by sorted class
    for name, rows in ref.data["class_dict"].items():
        assert (ref.y[rows] == ref.class_idx[name]).all()
        expected = ref.x[rows].permute(0, 2, 3, 1).numpy().astype(np.uint8)  # float CHW -> uint8 HWC
        np.testing.assert_array_equal(by_class(ours)[name], expected)


def test_mini_pickle_resized_like_pil(mini_pickle):
    ours = load_split("mini-imagenet", mini_pickle, "test", image_size=32)
    with open(mini_pickle / "mini-imagenet-cache-test.pkl", "rb") as f:
        data = pickle.load(f)
    for name, rows in data["class_dict"].items():
        expected = [np.asarray(Image.fromarray(data["image_data"][r]).resize((32, 32), BILINEAR)) for r in rows]
        np.testing.assert_array_equal(by_class(ours)[name], np.stack(expected))
    assert detect_layout("mini-imagenet", mini_pickle) == "pickle"


# ---------------------------------------------------------------- mini-ImageNet, Ravi & Larochelle csv
@pytest.fixture(scope="module")
def mini_csv(tmp_path_factory):
    """images/*.jpg (84 x 84) and {train,val,test}.csv, rows of the classes interleaved."""
    root = tmp_path_factory.mktemp("mini-csv")
    (root / "images").mkdir()
    rng = np.random.default_rng(1)
    for split, names in [("train", ["n2", "n1", "n3"]), ("val", ["n5", "n4"]), ("test", ["n7", "n6"])]:
        rows = [(f"{n}{i:08d}.jpg", n) for i in range(4) for n in names]
        for file, _ in rows:
            smooth = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8).repeat(14, 0).repeat(14, 1)
            Image.fromarray(smooth).save(root / "images" / file, quality=90)
        (root / f"{split}.csv").write_text("filename,label\n" + "".join(f"{f},{n}\n" for f, n in rows))
    return root


@pytest.mark.parametrize("size", [84, 32])
def test_mini_csv_matches_pil(mini_csv, size):
    ours = load_split("mini-imagenet", mini_csv, "train", image_size=size)
    assert ours.class_names == ("n1", "n2", "n3") and ours.class_sizes() == [4, 4, 4]
    for name, images in by_class(ours).items():
        files = sorted(p for p in (mini_csv / "images").iterdir() if p.name.startswith(name))
        np.testing.assert_array_equal(images, np.stack([pil_decode(p, size) for p in files]))
    assert detect_layout("mini-imagenet", mini_csv) == "csv"


def test_mini_layouts_agree(mini_csv, tmp_path):
    """A cache pickle built from the decoded JPEGs reads back as the same Split."""
    csv_split = load_split("mini-imagenet", mini_csv, "val")
    rows = [line.split(",") for line in (mini_csv / "val.csv").read_text().split()[1:]]
    images = np.stack([pil_decode(mini_csv / "images" / f) for f, _ in rows])
    class_dict = {n: [i for i, (_, m) in enumerate(rows) if m == n] for n in dict.fromkeys(n for _, n in rows)}
    dump({"image_data": images, "class_dict": class_dict}, tmp_path / "mini-imagenet-cache-validation.pkl")
    pkl_split = load_split("mini-imagenet", tmp_path, "val")
    assert pkl_split.fingerprint() == csv_split.fingerprint()
    np.testing.assert_array_equal(pkl_split.labels, csv_split.labels)
    np.testing.assert_array_equal(pkl_split.images, csv_split.images)


# ---------------------------------------------------------------- tiered-ImageNet
TIERED_NAMES = ["n0300", "n0100", "n0200"]  # label id -> name; ids are not in name order


@pytest.fixture(scope="module")
def tiered_png(tmp_path_factory):
    """root/tiered-imagenet/{split}_images_png.pkl + {split}_labels.pkl; val mimics a Python 2 pickle."""
    root = tmp_path_factory.mktemp("tiered-png")
    (root / "tiered-imagenet").mkdir()
    rng = np.random.default_rng(2)
    originals = {}
    for split in ("train", "val", "test"):
        labels = rng.permutation(np.repeat(np.arange(3), 4))
        images = rng.integers(0, 256, (len(labels), 24, 24, 3), dtype=np.uint8)
        encoded = [np.frombuffer(png_bytes(im), np.uint8) for im in images]
        meta = {"label_specific": labels, "label_general": labels // 2,
                "label_specific_str": TIERED_NAMES, "label_general_str": ["g0", "g1"]}
        if split == "val":  # bytes keys and names, raw bytes images
            encoded = [e.tobytes() for e in encoded]
            meta = {k.encode(): [n.encode() for n in v] if k.endswith("_str") else v for k, v in meta.items()}
        dump(encoded, root / "tiered-imagenet" / f"{split}_images_png.pkl")
        dump(meta, root / "tiered-imagenet" / f"{split}_labels.pkl")
        originals[split] = (images, labels)
    return root, originals


def test_tiered_png_matches_learn2learn(tiered_png):
    root, _ = tiered_png
    ours = load_split("tiered-imagenet", root, "train", image_size=24)
    ref = l2l_tiered_imagenet(root, "train")
    expected: dict[str, list] = {}
    for i in range(len(ref)):
        image, label = ref[i]
        expected.setdefault(TIERED_NAMES[label], []).append(np.asarray(image.convert("RGB")))
    assert ours.class_names == tuple(sorted(expected))
    for name, images in by_class(ours).items():
        np.testing.assert_array_equal(images, np.stack(expected[name]))
    assert detect_layout("tiered-imagenet", root) == "png-pkl"


@pytest.mark.parametrize("split", ["val", "test"])
def test_tiered_png_python2_style_and_resize(tiered_png, split):
    root, originals = tiered_png
    images, labels = originals[split]
    ours = load_split("tiered-imagenet", root, split, image_size=16)
    for name, got in by_class(ours).items():
        rows = np.flatnonzero(labels == TIERED_NAMES.index(name))
        expected = [np.asarray(Image.fromarray(images[r]).resize((16, 16), BILINEAR)) for r in rows]
        np.testing.assert_array_equal(got, np.stack(expected))


def test_tiered_npz_bgr_and_id_names(tmp_path):
    """{split}_images.npz stored BGR, labels key 'labels', no names: ids become the class names."""
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat([10, 2, 0], 3))
    rgb = rng.integers(0, 256, (len(labels), 12, 12, 3), dtype=np.uint8)
    for split in ("train", "val", "test"):
        np.savez(tmp_path / f"{split}_images.npz", images=rgb[..., ::-1])
        dump({"labels": labels}, tmp_path / f"{split}_labels.pkl")
    ours = load_split("tiered-imagenet", tmp_path, "test", image_size=12)
    assert ours.class_names == ("0", "10", "2")
    for name, got in by_class(ours).items():
        np.testing.assert_array_equal(got, rgb[labels == int(name)])
    assert detect_layout("tiered-imagenet", tmp_path) == "npz"


# ---------------------------------------------------------------- image folders
@pytest.fixture(scope="module")
def folder_root(tmp_path_factory):
    """{train,val,test}/<class>/*.png|jpg (20 x 20), masks for train only."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(4)
    for split in ("train", "val", "test"):
        for cls in ("dog", "cat", "emu"):
            for stem in ("img2", "img10", "img1", "x"):
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
                Image.fromarray(image).save(folder / (f"{stem}.jpg" if stem == "x" else f"{stem}.png"))
                if split == "train":
                    (root / "masks" / split / cls).mkdir(parents=True, exist_ok=True)
                    mask = ((rng.random((20, 20)) < 0.4) * rng.integers(1, 256)).astype(np.uint8)
                    Image.fromarray(mask).save(root / "masks" / split / cls / f"{stem}.png")
    return root


@pytest.mark.parametrize("size", [20, 16])
def test_imagefolder_images_and_masks(folder_root, size):
    ours = load_split("imagefolder", folder_root, "train", image_size=size)
    assert ours.class_names == ("cat", "dog", "emu") and ours.class_sizes() == [4, 4, 4]
    for c, ix in enumerate(ours.class_indices()):
        files = sorted((folder_root / "train" / ours.class_names[c]).iterdir())  # img1, img10, img2, x.jpg
        np.testing.assert_array_equal(ours.images[ix], np.stack([pil_decode(f, size) for f in files]))
        masks = [np.asarray(Image.open(folder_root / "masks" / "train" / ours.class_names[c] / f"{f.stem}.png")
                            .resize((size, size), Image.Resampling.NEAREST)) > 0 for f in files]
        np.testing.assert_array_equal(ours.masks[ix], np.stack(masks))
    assert load_split("imagefolder", folder_root, "val", image_size=size).masks is None


def test_cache_second_load_skips_decoding(folder_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CAM_CACHE", str(tmp_path))
    calls = []
    decode = imagefolder.decode_image
    monkeypatch.setattr(imagefolder, "decode_image", lambda *a: calls.append(a[0]) or decode(*a))
    first = load_split("imagefolder", folder_root, "train", image_size=20)
    assert len(calls) == 12
    second = load_split("imagefolder", folder_root, "train", image_size=20)
    assert len(calls) == 12 and isinstance(second.images, np.memmap)
    for a, b in [(first.images, second.images), (first.labels, second.labels), (first.masks, second.masks)]:
        np.testing.assert_array_equal(a, b)
    assert first.class_names == second.class_names and len(list(tmp_path.iterdir())) == 1
    touched = folder_root / "train" / "cat" / "img1.png"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_split("imagefolder", folder_root, "train", image_size=20)  # a source changed: decoded again
    assert len(calls) == 24


def test_cache_off(folder_root, tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CAM_CACHE", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    load_split("imagefolder", folder_root, "test", image_size=20)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- synthetic and the data command
def test_synthetic_dispatches_to_generator():
    from fewshot_cam.data.synthetic import load_synthetic

    ours, ref = load_split("synthetic", None, "test", image_size=16), load_synthetic("test", 16)
    assert ours.class_names == ref.class_names
    np.testing.assert_array_equal(ours.images, ref.images)


def test_data_info_counts(cli, mini_pickle):
    code, out, _ = cli("data", "info", "--dataset", "mini-imagenet", "--root", mini_pickle)
    assert code == 0 and "layout: pickle" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:]}
    assert rows == {"train": ["4", "20"], "val": ["4", "20"], "test": ["3", "15"]}


def test_data_synth_then_info_and_show(cli, tmp_path):
    from fewshot_cam.data.synthetic import SynthConfig, generate_split

    out = tmp_path / "synth"
    code, _, _ = cli("data", "synth", "--out", out, "--seed", 3, "--image-size", 16, "--images-per-class", 2)
    assert code == 0
    ref = generate_split("val", SynthConfig(seed=3, image_size=16, images_per_class=2))
    got = load_split("imagefolder", out, "val", image_size=16)
    assert got.class_names == ref.class_names
    for a, b in [(got.images, ref.images), (got.masks, ref.masks), (got.labels, ref.labels)]:
        np.testing.assert_array_equal(a, b)
    code, text, _ = cli("data", "info", "--dataset", "imagefolder", "--root", out, "--image-size", 16)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert code == 0 and rows["val"] == [str(len(ref.class_names)), str(len(ref.images)), "yes"]
    png = tmp_path / "grid.png"
    code, _, _ = cli("data", "show", "--dataset", "imagefolder", "--root", out, "--split", "val",
                     "--image-size", 16, "--out", png, "--n-classes", 3, "--per-class", 2)
    assert code == 0 and Image.open(png).format == "PNG"
