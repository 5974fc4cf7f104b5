"""Bad dataset input raises one-line UserErrors naming the value and the path, in the library and the CLI."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from fewshot_cam.data.datasets import DATASETS, load_split
from fewshot_cam.errors import UserError


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def mini_pickle(root, split="train", image_data=None):
    root.mkdir(parents=True, exist_ok=True)
    if image_data is None:
        image_data = np.zeros((4, 8, 8, 3), np.uint8)
    with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
        pickle.dump({"image_data": image_data, "class_dict": {"a": [0, 1], "b": [2, 3]}}, f)
    return root / f"mini-imagenet-cache-{split}.pkl"


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """One broken root per failure, keyed by case name -> (dataset, root, split, text the message must hold)."""
    base = tmp_path_factory.mktemp("bad")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cases = {"missing root": ("mini-imagenet", base / "nowhere", "train", str(base / "nowhere"))}

    path = mini_pickle(base / "no-test")
    cases["missing split file"] = ("mini-imagenet", path.parent, "test", "mini-imagenet-cache-test.pkl")

    path = mini_pickle(base / "truncated-pickle")
    path.write_bytes(path.read_bytes()[:100])
    cases["truncated pickle"] = ("mini-imagenet", path.parent, "train", str(path))

    path = mini_pickle(base / "bad-shape", image_data=np.zeros((4, 8, 8), np.uint8))
    cases["wrong image shape"] = ("mini-imagenet", path.parent, "train", "shape (4, 8, 8)")

    root = base / "csv"
    (root / "images").mkdir(parents=True)
    Image.fromarray(noise).save(root / "images" / "a1.jpg")
    (root / "train.csv").write_text("filename,label\na1.jpg,a\na2.jpg,a\n")
    cases["csv row names a missing file"] = ("mini-imagenet", root, "train", str(root / "images" / "a2.jpg"))

    root = base / "tiered" / "tiered-imagenet"
    root.mkdir(parents=True)
    images = [encoded(noise, "PNG") for _ in range(4)]
    images[3] = images[3][: len(images[3]) // 2]
    (root / "train_images_png.pkl").write_bytes(pickle.dumps(images))
    (root / "train_labels.pkl").write_bytes(pickle.dumps({"label_specific": np.array([0, 0, 1, 1])}))
    where = f"{root / 'train_images_png.pkl'} [image 3]"
    cases["truncated png in pickle"] = ("tiered-imagenet", root.parent, "train", where)

    root = base / "folder"
    (root / "train" / "cat").mkdir(parents=True)
    Image.fromarray(noise).save(root / "train" / "cat" / "ok.png")
    (root / "train" / "cat" / "broken.jpg").write_bytes(encoded(noise, "JPEG")[:300])
    cases["truncated jpeg"] = ("imagefolder", root, "train", str(root / "train" / "cat" / "broken.jpg"))

    cases["unknown dataset"] = ("imagenet-21k", root, "train", "imagenet-21k")
    cases["unknown split"] = ("imagefolder", root, "validation", "validation")
    return cases


CASES = ["missing root", "missing split file", "truncated pickle", "wrong image shape", "csv row names a missing file",
         "truncated png in pickle", "truncated jpeg", "unknown dataset", "unknown split"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_user_error(bad, case):
    dataset, root, split, expected = bad[case]
    with pytest.raises(UserError) as info:
        load_split(dataset, root, split, image_size=16)
    message = str(info.value)
    assert expected in message and "\n" not in message
    if case == "unknown dataset":
        assert all(name in message for name in DATASETS)


def test_root_is_required_except_for_synthetic():
    with pytest.raises(UserError, match="needs --root"):
        load_split("tiered-imagenet", None, "train")


@pytest.mark.parametrize("case", ["missing root", "truncated pickle", "truncated jpeg", "unknown dataset"])
def test_cli_reports_one_line_and_exits_2(bad, cli, tmp_path, case):
    dataset, root, split, expected = bad[case]
    if case in ("truncated pickle", "truncated jpeg"):  # only decoding finds these
        argv = ["data", "show", "--dataset", dataset, "--root", root, "--split", split, "--out", tmp_path / "g.png"]
    else:
        argv = ["data", "info", "--dataset", dataset, "--root", root]
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err and err.startswith("fewshot-cam: error:")
