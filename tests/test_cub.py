"""CUB-200-2011 on tiny files in its exact layout: splits, masks, crop=box, split files, JSON filelists."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cub_layout import Picture, write_layout, write_tiny_cub
from PIL import Image

from fewshot_cam.data.cub import pixel_box
from fewshot_cam.data.cub_splits import closerlook_classes
from fewshot_cam.data.datasets import class_sizes, detect_layout, load_split
from fewshot_cam.errors import UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    write_tiny_cub(root)
    return root


def test_closerlook_rule_on_200_class_folders():
    names = [f"{i:03d}.Species_{i}" for i in range(1, 201)]
    shuffled = list(np.random.default_rng(0).permutation(names))
    base, val, novel = (closerlook_classes(shuffled, s) for s in ("train", "val", "test"))
    # The rule written out: sorted position p (from 0) -> base if p even, val if p = 1 mod 4, novel if p = 3 mod 4;
    # folder 001 is p = 0, so base holds the odd folder numbers, val 002, 006, ..., novel 004, 008, ...
    assert base == [f"{n:03d}.Species_{n}" for n in range(1, 201, 2)]
    assert val == [f"{n:03d}.Species_{n}" for n in range(2, 201, 4)]
    assert novel == [f"{n:03d}.Species_{n}" for n in range(4, 201, 4)]
    assert (len(base), len(val), len(novel)) == (100, 50, 50)
    assert sorted(base + val + novel) == names


def test_tiny_layout_splits_sizes_and_order(tiny):
    splits = {s: load_split("cub", tiny, s, 16) for s in ("train", "val", "test")}
    assert splits["train"].class_names == tuple(f"{n:03d}.Bird_{'ABCDEFGHIJKL'[n - 1]}" for n in (1, 3, 5, 7, 9, 11))
    assert splits["val"].class_names == ("002.Bird_B", "006.Bird_F", "010.Bird_J")
    assert splits["test"].class_names == ("004.Bird_D", "008.Bird_H", "012.Bird_L")
    assert class_sizes("cub", tiny, "test") == {"004.Bird_D": 4, "008.Bird_H": 4, "012.Bird_L": 4}
    # --root at CUB_200_2011/ itself reads the same pixels; images keep images.txt order within a class
    same = load_split("cub", tiny / "CUB_200_2011", "test", 16)
    assert np.array_equal(same.images, splits["test"].images) and np.array_equal(same.masks, splits["test"].masks)
    first = tiny / "CUB_200_2011/images/004.Bird_D/Bird_3_0000_100.jpg"
    with Image.open(first) as im:
        want = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR))
    assert np.array_equal(splits["test"].images[0], want)


def test_soft_segmentation_threshold_after_the_image_resize(tmp_path):
    ramp = np.tile(np.array([0, 64, 127, 128, 200, 255, 255, 0], np.uint8), (8, 1))  # (8, 8) columns of grey
    image = np.full((8, 8, 3), 90, np.uint8)
    write_layout(tmp_path, [Picture("001.A", "a", image, (1.0, 1.0, 4.0, 4.0), ramp)])
    at = lambda t: load_split("cub", tmp_path, "train", 8, {"segmentation_threshold": t}).masks[0]  # noqa: E731
    assert np.array_equal(at(0.5)[0], [0, 0, 0, 1, 1, 1, 1, 0])  # > 127.5
    assert np.array_equal(at(0.25)[0], [0, 1, 1, 1, 1, 1, 1, 0])  # > 63.75
    assert np.array_equal(at(0.9)[0], [0, 0, 0, 0, 0, 1, 1, 0])  # > 229.5
    # at another size the grey mask is resized bilinearly like the image, then thresholded
    small = load_split("cub", tmp_path, "train", 4).masks[0]
    resized = np.asarray(Image.fromarray(ramp).resize((4, 4), Image.Resampling.BILINEAR))
    assert np.array_equal(small, resized > 127.5) and small.any() and not small.all()


def test_pixel_box_rounds_edges_half_up_and_clips():
    assert pixel_box((4.4, 2.5, 6.0, 6.0), (20, 12)) == (4, 3, 10, 9)  # x+w = 10.4, y+h = 8.5
    assert pixel_box((60.0, 27.0, 325.0, 304.0), (500, 331)) == (60, 27, 385, 331)  # bottom clipped at 331
    assert pixel_box((-3.0, 5.2, 0.2, 0.1), (8, 8)) == (0, 5, 1, 6)  # at least one pixel


def test_crop_box_crops_image_and_mask_alike(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 20, 3)).astype(np.uint8)
    seg = (rng.random((12, 20)) > 0.5).astype(np.uint8) * 255
    write_layout(tmp_path, [Picture("001.A", "a", image, (4.4, 2.5, 6.0, 6.0), seg)])
    with Image.open(tmp_path / "CUB_200_2011/images/001.A/a.jpg") as im:
        decoded = np.asarray(im.convert("RGB"))
    cropped = load_split("cub", tmp_path, "train", 6, {"crop": "box"})  # the 6 x 6 box: no resize
    assert np.array_equal(cropped.images[0], decoded[3:9, 4:10])  # rows 3..8, columns 4..9 by hand
    assert np.array_equal(cropped.masks[0], seg[3:9, 4:10] > 127)
    boxes = load_split("cub", tmp_path, "train", 6, {"crop": "box", "masks": "boxes"})
    assert boxes.masks[0].all()


def test_masks_from_boxes_without_segmentations(tmp_path, cli):
    image = np.zeros((12, 12, 3), np.uint8)
    write_layout(tmp_path, [Picture("001.A", "a", image, (4.4, 2.5, 6.0, 6.0), None)], segmentations="none")
    mask = load_split("cub", tmp_path, "train", 12).masks[0]
    want = np.zeros((12, 12), bool)
    want[3:9, 4:10] = True
    assert np.array_equal(mask, want)
    assert "masks from bounding boxes (no segmentations found)" in detect_layout("cub", tmp_path)
    code, out, err = cli("data", "info", "--dataset", "cub", "--root", tmp_path)
    assert code == 0 and "masks from bounding boxes" in out, err
    with pytest.raises(UserError, match="data.masks=segmentations but no segmentations"):
        load_split("cub", tmp_path, "train", 12, {"masks": "segmentations"})


def test_segmentations_beside_given_or_missing_per_image(tmp_path, tiny):
    inside = load_split("cub", tiny, "val", 16)
    beside = tmp_path / "beside"
    shutil.copytree(tiny / "CUB_200_2011", beside / "CUB_200_2011", ignore=shutil.ignore_patterns("segmentations"))
    shutil.copytree(tiny / "CUB_200_2011/segmentations", beside / "segmentations")
    assert np.array_equal(load_split("cub", beside, "val", 16).masks, inside.masks)
    given = load_split("cub", beside, "val", 16, {"segmentations": str(beside / "segmentations")})
    assert np.array_equal(given.masks, inside.masks)
    boxes = load_split("cub", beside, "val", 16, {"masks": "boxes"})
    assert not np.array_equal(boxes.masks, inside.masks)
    missing = beside / "segmentations/002.Bird_B/Bird_1_0000_100.png"
    missing.unlink()
    mixed = load_split("cub", beside, "val", 16)  # auto: that one image's mask is its box
    assert np.array_equal(mixed.masks[0], boxes.masks[0]) and np.array_equal(mixed.masks[1:], inside.masks[1:])
    with pytest.raises(UserError, match="Bird_1_0000_100.png: segmentation of image"):
        load_split("cub", beside, "val", 16, {"masks": "segmentations"})


def test_layout_errors_name_the_file(tmp_path, tiny):
    bad = tmp_path / "bad"
    shutil.copytree(tiny / "CUB_200_2011", bad / "CUB_200_2011", ignore=shutil.ignore_patterns("segmentations"))
    boxes = bad / "CUB_200_2011/bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace("\n2 ", "\n2 x", 1))
    with pytest.raises(UserError, match=r"bounding_boxes.txt: image 2: box .* is not four numbers"):
        load_split("cub", bad, "train", 16)
    (bad / "CUB_200_2011/image_class_labels.txt").write_text("1 2\n")
    with pytest.raises(UserError, match="image 1 .* has class 2 = '002.Bird_B' in classes.txt, not its folder"):
        load_split("cub", bad, "train", 16)
    with pytest.raises(UserError, match="no CUB-200-2011 found"):
        load_split("cub", tmp_path, "train", 16)
    with pytest.raises(UserError, match="unknown config key 'data.crops'"):
        load_split("cub", tiny, "train", 16, {"crops": "box"})
    with pytest.raises(UserError, match="dataset 'synthetic' takes no data options"):
        load_split("synthetic", None, "train", 16, {"crop": "box"})


def closerlook_json(path, label_names, images, labels):
    path.write_text(json.dumps({"label_names": label_names, "image_names": images, "image_labels": labels}))


def test_split_files_json_and_csv_choose_the_classes(tmp_path, tiny):
    cub = tiny / "CUB_200_2011"
    lines = (cub / "images.txt").read_text().split()[1::2]  # class/file.jpg in id order
    folders = sorted({rel.split("/")[0] for rel in lines})
    mine = [rel for rel in lines if rel.startswith(("001.", "002."))]
    json_dir, csv_dir = tmp_path / "json", tmp_path / "csv"
    for d in (json_dir, csv_dir):
        d.mkdir()
    elsewhere = [f"/home/someone/data/CUB_200_2011/images/{rel}" for rel in mine[::-1]]  # another machine's, shuffled
    for name in ("base", "val", "novel"):
        closerlook_json(
            json_dir / f"{name}.json", folders, elsewhere, [folders.index(r.split("/")[0]) for r in mine[::-1]]
        )
    (csv_dir / "test.csv").write_text("filename,label\n" + "".join(f"{r.split('/')[1]},bird{r[:3]}\n" for r in mine))
    from_json = load_split("cub", tiny, "val", 16, {"splits": str(json_dir)})
    assert from_json.class_names == ("001.Bird_A", "002.Bird_B") and from_json.class_sizes() == [4, 4]
    rule = load_split("cub", tiny, "train", 16)  # class 001 under the rule: the same pixels, masks and order
    assert np.array_equal(from_json.images[:4], rule.images[:4]) and np.array_equal(from_json.masks[:4], rule.masks[:4])
    from_csv = load_split("cub", tiny, "test", 16, {"splits": str(csv_dir)})
    assert from_csv.class_names == ("bird001", "bird002") and np.array_equal(from_csv.images, from_json.images)
    (csv_dir / "val.csv").write_text(f"filename,label\n{mine[0]},a\n{mine[0]},a\n")
    with pytest.raises(UserError, match="val.csv: split file names 001.Bird_A/Bird_0_0000_100.jpg twice"):
        load_split("cub", tiny, "val", 16, {"splits": str(csv_dir)})
    with pytest.raises(UserError, match="split 'train' missing: neither base.json nor train.csv"):
        load_split("cub", tiny, "train", 16, {"splits": str(csv_dir)})


def test_filelist_dataset_resolves_stored_paths_against_the_root(tmp_path, tiny):
    lists = tmp_path / "lists"
    lists.mkdir()
    rels = (tiny / "CUB_200_2011/images.txt").read_text().split()[1::2]
    labels = sorted({r.split("/")[0] for r in rels})
    stored = [f"/gone/x/CUB_200_2011/images/{r}" for r in rels]
    split_of = {n: s for s in ("train", "val", "test") for n in load_split("cub", tiny, s, 16).class_names}
    for split, name in (("train", "base"), ("val", "val"), ("test", "novel")):
        keep = [i for i, r in enumerate(rels) if split_of[r.split("/")[0]] == split]
        closerlook_json(lists / f"{name}.json", labels, [stored[i] for i in keep],
                        [labels.index(rels[i].split("/")[0]) for i in keep])
    for split in ("train", "val", "test"):
        got = load_split("filelist", lists, split, 16, {"images": str(tiny)})
        want = load_split("cub", tiny, split, 16)
        assert got.class_names == want.class_names and np.array_equal(got.images, want.images)
        assert got.masks is None
    with pytest.raises(
        UserError, match=r"image '/gone/x/CUB_200_2011/images/001.Bird_A/Bird_0_0000_100.jpg' not found"
    ):
        load_split("filelist", lists, "train", 16)  # --root lists/ holds no images
    closerlook_json(lists / "base.json", labels, stored[:1], [len(labels)])
    with pytest.raises(UserError, match=r"base.json: image_labels\[0\] = 12 is not an index"):
        load_split("filelist", lists, "train", 16, {"images": str(tiny)})


def test_joined_splits_hold_every_class_once():
    parts = [load_split("synthetic", None, s, 16) for s in ("train", "val", "test")]
    joined = load_split("synthetic", None, "train+val+test", 16)
    assert joined.name == "synthetic/train+val+test" and joined.masks is not None
    assert joined.class_names == tuple(sorted(c for p in parts for c in p.class_names))
    for part in parts:
        for c, name in enumerate(part.class_names):
            rows = joined.class_indices()[joined.class_names.index(name)]
            assert np.array_equal(joined.images[rows], part.images[part.class_indices()[c]])
            assert np.array_equal(joined.masks[rows], part.masks[part.class_indices()[c]])
    with pytest.raises(UserError, match="names a split twice"):
        load_split("synthetic", None, "train+train", 16)


def test_crop_is_part_of_the_cache_key(tiny):
    plain = load_split("cub", tiny, "test", 16)
    cropped = load_split("cub", tiny, "test", 16, {"crop": "box"})
    assert not np.array_equal(plain.images, cropped.images)
    assert np.array_equal(load_split("cub", tiny, "test", 16).images, plain.images)


def test_a_16_bit_segmentation_is_read_by_value_not_clipped(tmp_path):
    """The same soft mask as 8 bits (v) and 16 bits (257 v) gives the same grey mask; convert("L") would
    clip every non-zero 16-bit value to 255 and turn the soft edge into foreground."""
    from fewshot_cam.data.cub import Entry, grey_mask

    image = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(image)
    ramp = np.tile(np.arange(0, 256, 32, dtype=np.uint16), (6, 1))  # (6, 8): 0, 32, ..., 224
    Image.fromarray(ramp.astype(np.uint8)).save(tmp_path / "m8.png")
    Image.fromarray((ramp * 257).astype(np.uint16)).save(tmp_path / "m16.png")
    masks = [np.asarray(grey_mask(Entry(image, "c", (0.0, 0.0, 8.0, 6.0), tmp_path / f"m{b}.png"))) for b in (8, 16)]
    assert np.array_equal(masks[0], ramp) and np.array_equal(masks[1], ramp)
