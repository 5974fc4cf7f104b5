"""``data boxes`` on tiny files in the exact on-disk layouts: an ImageNet train folder of JPEGs of
different sizes, VOC XML boxes and a LOC csv, a Ravi & Larochelle csv folder, an imagefolder of
ImageNet names, a learn2learn mini cache and a tieredImageNet png-pkl shuffled within each class.

Oracle: the boxes written here, scaled by hand: a pixel of the S x S mask is foreground when its centre,
mapped back into the W x H original, lies inside one of the image's own-class boxes (a plain loop).
"""

from __future__ import annotations

import csv
import io
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fewshot_cam.data.boxes import BoxRequest, build_box_masks
from fewshot_cam.data.mask_file import load_mask_file
from fewshot_cam.errors import UserError

A, B = "n01000001", "n01000002"
NUMBERS = (1, 2, 9, 10, 33, 55, 100)  # string order: 1, 10, 100, 2, 33, 55, 9
SIZES = ((60, 40), (52, 76), (80, 80), (48, 44), (100, 52), (100, 52), (64, 48))
WORDS = {A: "tench", B: "goldfish"}


def boxes_of(wnid: str, number: int, w: int, h: int) -> list[tuple] | None:
    """The annotation written for one file: None = no annotation file at all."""
    if number == 9:
        return None
    if number == 10:
        return [("n09999999", 0, 0, w // 2, h // 2)]  # only another class's box: no mask
    if number == 2:  # two own boxes and a foreign one
        return [
            (wnid, w // 8, h // 8, w // 3, h // 2),
            (wnid, w // 2, h // 3, w - 1, h - 1),
            ("n09999999", 0, 0, w - 1, 5),
        ]
    return [(wnid, w // 5 + (wnid == B), h // 4, 3 * w // 4, 2 * h // 3)]


def oracle(annotation: list[tuple] | None, wnid: str, w: int, h: int, s: int) -> np.ndarray:
    mask = np.zeros((s, s), bool)
    for name, x0, y0, x1, y1 in annotation or []:
        if name != wnid:
            continue
        for r in range(s):
            for c in range(s):
                x, y = (c + 0.5) * w / s, (r + 0.5) * h / s
                mask[r, c] |= x0 <= x < x1 + 1 and y0 <= y < y1 + 1
    return mask


def smooth(rng, w: int, h: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    )


def squash(image: np.ndarray) -> np.ndarray:
    """What mini-imagenet-tools does: cv2 INTER_AREA to 84 x 84."""
    return cv2.resize(image, (84, 84), interpolation=cv2.INTER_AREA)


def write_xml(path: Path, stem: str, w: int, h: int, annotation: list[tuple]) -> None:
    objects = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                      f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for n, x0, y0, x1, y1 in annotation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>x</folder><filename>{stem}</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>3</depth></size>{objects}</annotation>")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """ImageNet train folder + XML folder + LOC csv + synsets; returns (tmp, originals)."""
    tmp = tmp_path_factory.mktemp("boxes")
    rng = np.random.default_rng(0)
    originals, loc_rows = {}, []
    for wnid in (A, B):
        for number, (w, h) in zip(NUMBERS, SIZES):
            stem = f"{wnid}_{number}"
            image = originals[(wnid, 33)] if (wnid, number) == (A, 55) else smooth(rng, w, h)  # A_55: a duplicate
            originals[(wnid, number)] = image
            (tmp / "train" / wnid).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp / "train" / wnid / f"{stem}.JPEG", quality=95)
            annotation = boxes_of(wnid, number, w, h)
            if annotation is not None:
                write_xml(tmp / "xml" / wnid / f"{stem}.xml", stem, w, h, annotation)
                loc_rows.append([stem, " ".join(" ".join(map(str, a)) for a in annotation)])
    with open(tmp / "LOC_train_solution.csv", "w", newline="") as f:
        csv.writer(f).writerows([["ImageId", "PredictionString"], *loc_rows])
    (tmp / "words.txt").write_text(f"{A}\ttench, Tinca tinca\n{B}\tgoldfish, Carassius auratus\nn09999999\tgoldfish\n")
    return tmp, originals


def expected(source: tuple[str, int] | None, s: int) -> tuple[np.ndarray, bool]:
    if source is None:
        return np.zeros((s, s), bool), False
    wnid, number = source
    w, h = SIZES[NUMBERS.index(number)]
    mask = oracle(boxes_of(wnid, number, w, h), wnid, w, h, s)
    return mask, bool(mask.any())


def build(tmp: Path, dataset: str, root: Path, boxes: str = "xml", size: int = 84, **kw):
    request = BoxRequest(dataset=dataset, root=root, split="test", imagenet_train=tmp / "train", boxes=tmp / boxes,
                         parts=tmp / f"{root.name}.parts", image_size=size, **kw)
    return build_box_masks(request, show_progress=False)


def check(result, sources: list, s: int) -> None:
    """Every image's mask, has_mask and source equal the oracle's (sources: (wnid, number) or None)."""
    assert len(result.source) == len(sources)
    for i, src in enumerate(sources):
        mask, has = expected(src, s)
        assert result.has_mask[i] == has, (i, src)
        np.testing.assert_array_equal(result.masks[i], mask, err_msg=str((i, src)))
        assert result.source[i] == ("" if src is None else f"{src[0]}_{src[1]}.JPEG")


RAVI = {A: (4, 1, 7, 2), B: (2, 3, 1)}  # 1-based positions in numeric order, in csv order


def write_ravi(tmp: Path, originals: dict, name: str = "mini") -> Path:
    root = tmp / name
    (root / "images").mkdir(parents=True)
    rows = [["filename", "label"]]
    for wnid, ks in RAVI.items():
        for k in ks:
            Image.fromarray(squash(originals[(wnid, NUMBERS[k - 1])])).save(
                root / "images" / f"{wnid}{k:08d}.jpg", quality=95
            )
            rows.append([f"{wnid}{k:08d}.jpg", wnid])
    with open(root / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


def ravi_sources() -> list:
    return [(w, NUMBERS[k - 1]) for w, ks in RAVI.items() for k in ks]


@pytest.mark.parametrize("boxes", ["xml", "LOC_train_solution.csv"])
def test_ravi_csv_uses_numeric_file_order_and_scales_every_box(world, boxes):
    tmp, originals = world
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    split, result = build(tmp, "mini-imagenet", root, boxes)
    check(result, ravi_sources(), 84)
    assert result.source[1] == f"{A}_1.JPEG" and result.source[3] == f"{A}_2.JPEG"  # 2nd in numeric order, not _10
    assert result.coverage == {"images": 7, "matched": 7, "with boxes": 5, "by name": 7, "by content": 0,
                               "ambiguous": 0, "distant": 0}  # B_9: no annotation; A_10: only a foreign box
    assert not (tmp / "mini.parts").exists()  # partial results are removed once done


def test_one_hand_scaled_box(world):
    """B_1 is 60 x 40 with box (13, 10)-(45, 26): at 84 px columns [13*1.4, 46*1.4) = [18.2, 64.4) -> 18..63,
    rows [10*2.1, 27*2.1) = [21, 56.7) -> 21..56."""
    tmp, originals = world
    assert boxes_of(B, 1, 60, 40) == [(B, 13, 10, 45, 26)]
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    _, result = build(tmp, "mini-imagenet", root)
    want = np.zeros((84, 84), bool)
    want[21:57, 18:64] = True
    np.testing.assert_array_equal(result.masks[6], want)  # B's csv order: k = 2, 3, 1


def test_imagefolder_of_imagenet_names_at_another_size(world):
    tmp, originals = world
    root = tmp / "folder"
    sources = [(A, 100), (A, 2), (A, 9), (B, 10), (B, 33)]
    for wnid, number in sources:
        (root / "test" / wnid).mkdir(parents=True, exist_ok=True)
        Image.fromarray(squash(originals[(wnid, number)])).save(root / "test" / wnid / f"{wnid}_{number}.png")
    _, result = build(tmp, "imagefolder", root, size=40)
    check(result, sorted(sources, key=lambda s: (s[0], f"{s[0]}_{s[1]}.png")), 40)  # files sorted by name


def test_mini_pickle_shuffled_within_classes_matches_by_content(world):
    """The cache's rows are shuffled; A_33 has a duplicate (A_55): ambiguous; one image is from nowhere."""
    tmp, originals = world
    rng = np.random.default_rng(1)
    members = {A: [(A, 100), (A, 33), (A, 1), None, (A, 2)], B: [(B, 10), (B, 2), (B, 1), (B, 55)]}
    images, class_dict, rows = [], {}, rng.permutation(9)
    for wnid, srcs in members.items():
        class_dict[wnid] = [int(r) for r in rows[len(images):len(images) + len(srcs)]]
        images += [squash(smooth(rng, 70, 50) if s is None else originals[s]) for s in srcs]
    image_data = np.empty((9, 84, 84, 3), np.uint8)
    image_data[np.concatenate(list(class_dict.values()))] = images
    root = tmp / "minipkl"
    root.mkdir()
    with open(root / "mini-imagenet-cache-test.pkl", "wb") as f:
        pickle.dump({"image_data": image_data, "class_dict": class_dict}, f)
    _, result = build(tmp, "mini-imagenet", root, workers=2)
    truth = [None if s == (A, 33) else s for s in members[A] + members[B]]  # ambiguous -> unmatched
    check(result, truth, 84)
    assert result.coverage["ambiguous"] == 1 and result.coverage["distant"] == 1 and result.coverage["by content"] == 7


def test_tiered_png_pkl_with_word_class_names_and_synsets(world):
    tmp, originals = world
    srcs = [(B, 100), (A, 1), (B, 2), (A, 10), (A, 100), (B, 33)]  # not grouped by class
    pngs = []
    for s in srcs:
        buf = io.BytesIO()
        Image.fromarray(squash(originals[s])).save(buf, format="PNG")
        pngs.append(np.frombuffer(buf.getvalue(), np.uint8))
    root = tmp / "tiered"
    root.mkdir()
    with open(root / "test_images_png.pkl", "wb") as f:
        pickle.dump(pngs, f)
    with open(root / "test_labels.pkl", "wb") as f:
        pickle.dump({"label_specific": np.array([1 if w == B else 0 for w, _ in srcs]),
                     "label_specific_str": [WORDS[A], WORDS[B]]}, f)
    with pytest.raises(UserError, match="pass --synsets"):
        build(tmp, "tiered-imagenet", root, "LOC_train_solution.csv")
    _, result = build(tmp, "tiered-imagenet", root, "LOC_train_solution.csv", size=32, synsets=tmp / "words.txt")
    # canonical order: classes sorted by name (goldfish = B before tench = A), file order within a class
    check(result, [s for s in srcs if s[0] == B] + [s for s in srcs if s[0] == A], 32)


def edited_xml(tmp: Path, folder: str, stem: str, edit) -> Path:
    """A copy of the XML folder in which ``stem``'s file is rewritten by ``edit(text)``; its path."""
    shutil.copytree(tmp / "xml", tmp / folder)
    path = tmp / folder / stem.split("_")[0] / f"{stem}.xml"
    path.write_text(edit(path.read_text()))
    return path


def test_wrong_size_annotation_is_an_error_naming_the_file(world):
    tmp, originals = world
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    path = edited_xml(tmp, "badxml", f"{A}_100", lambda t: t.replace("<width>64</width>", "<width>640</width>"))
    with pytest.raises(UserError, match=f"{path}.*640 x 48.*{A}_100.JPEG is 64 x 48"):
        build(tmp, "mini-imagenet", root, "badxml")


def test_pixel_mismatch_of_a_name_match_is_an_error_naming_both_files(world):
    tmp, originals = world
    root = write_ravi(tmp, originals, "mini_wrong")
    Image.fromarray(squash(originals[(B, 1)])).save(root / "images" / f"{A}00000004.jpg", quality=95)
    with pytest.raises(UserError, match=f"{A}00000004.jpg does not look like its ImageNet source .*{A}_10.JPEG"):
        build(tmp, "mini-imagenet", root)


def test_xml_with_a_doctype_is_refused(world):
    tmp, originals = world
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    edited_xml(tmp, "evilxml", f"{B}_1", lambda t: '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]>' + t)
    with pytest.raises(UserError, match="DOCTYPE|refused"):
        build(tmp, "mini-imagenet", root, "evilxml")


def test_resume_reuses_finished_classes(world, monkeypatch):
    from fewshot_cam.data import source_match

    tmp, originals = world
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    decoded = []
    real = source_match.thumbnail_files
    monkeypatch.setattr(source_match, "thumbnail_files", lambda paths: decoded.append(paths) or real(paths))
    parts = tmp / "mini.parts"
    shutil.rmtree(parts, ignore_errors=True)  # an earlier test's failed run may have left one
    list(source_match.class_thumbnails({A: [tmp / "train" / A / f"{A}_{n}.JPEG" for n in (1, 2, 10, 100)]}, parts, 1))
    assert (parts / f"{A}.npz").is_file() and len(decoded) == 1
    _, result = build(tmp, "mini-imagenet", root)
    assert len(decoded) == 2 and all(B in p for p in decoded[1])  # only B decoded again
    check(result, ravi_sources(), 84)


def test_cli_writes_a_checked_mask_file_and_prints_coverage(world, cli):
    from fewshot_cam.data.datasets import load_split

    tmp, originals = world
    root = write_ravi(tmp, originals, "mini_cli")
    shutil.copy(root / "test.csv", root / "val.csv")
    out = tmp / "mini-test.npz"
    code, stdout, err = cli("data", "boxes", "--dataset", "mini-imagenet", "--root", root, "--imagenet-train",
                            tmp / "train", "--boxes", tmp / "xml", "--split", "val", "test", "--out",
                            tmp / "mini-{split}.npz", "--workers", "1")
    assert code == 0, err
    assert "| mini-imagenet/test | 7 " in stdout and "5 (71.4%)" in stdout
    assert "| total              | 14 " in stdout and "10 (71.4%)" in stdout and (tmp / "mini-val.npz").is_file()
    code, _, err = cli("data", "boxes", "--dataset", "mini-imagenet", "--root", root, "--imagenet-train",
                       tmp / "train", "--boxes", tmp / "xml", "--split", "val", "test", "--out", out)
    assert code == 2 and "must hold {split}" in err
    masks, has_mask = load_mask_file(out, load_split("mini-imagenet", root, "test", 84))
    want = [expected(s, 84) for s in ravi_sources()]
    np.testing.assert_array_equal(masks, np.stack([m for m, _ in want]))
    np.testing.assert_array_equal(has_mask, [h for _, h in want])
    with pytest.raises(UserError, match="image size 84, but the data has 40"):
        load_mask_file(out, load_split("mini-imagenet", root, "test", 40))
    code, _, err = cli("data", "show", "--dataset", "mini-imagenet", "--root", root, "--split", "test",
                       "--masks", out, "--out", tmp / "show.png")
    assert code == 0, err
    assert Image.open(tmp / "show.png").size[0] > 200


def test_grabcut_refinement_stays_inside_the_boxes(world):
    tmp, originals = world
    root = tmp / "mini" if (tmp / "mini").is_dir() else write_ravi(tmp, originals)
    _, boxes = build(tmp, "mini-imagenet", root)
    _, cut = build(tmp, "mini-imagenet", root, refine="grabcut")
    np.testing.assert_array_equal(cut.has_mask, boxes.has_mask)
    assert not (cut.masks & ~boxes.masks).any() and cut.masks[cut.has_mask].any((1, 2)).all()


def test_words_must_name_exactly_one_synset_of_the_train_folder(tmp_path):
    from fewshot_cam.data.imagenet_boxes import read_synsets, resolve_wnid

    (tmp_path / "LOC_synset_mapping.txt").write_text("n00000001 crane\nn00000002 crane\nn00000003 tench, Tinca tinca\n")
    table = read_synsets(tmp_path / "LOC_synset_mapping.txt")
    assert resolve_wnid("Tinca_tinca", table, {"n00000003"}) == "n00000003"
    assert resolve_wnid("crane", table, {"n00000002", "n00000003"}) == "n00000002"  # the other is not in the folder
    with pytest.raises(UserError, match=r"'crane' names several synsets \(n00000001, n00000002\)"):
        resolve_wnid("crane", table, {"n00000001", "n00000002"})
    with pytest.raises(UserError, match="'heron' names no synset"):
        resolve_wnid("heron", table, {"n00000001"})


def test_a_malformed_loc_csv_names_the_line(tmp_path):
    from fewshot_cam.data.imagenet_boxes import open_boxes

    path = tmp_path / "LOC_train_solution.csv"
    path.write_text(f"ImageId,PredictionString\n{A}_1,{A} 1 2 3 4 {A} 5 6 7 8 \n{A}_2,{A} 1 2 3\n")
    with pytest.raises(UserError, match="LOC_train_solution.csv: line 3: PredictionString has 4 fields"):
        open_boxes(path)
    path.write_text(f"ImageId,PredictionString\n{A}_1,{A} 1 2 3 4 {A} 5 6 7 8 \n")
    annotation = open_boxes(path).get(A, f"{A}_1")
    assert annotation.size is None and annotation.boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
