"""Data-layer hardening: data files never run code, every PNG mode converts by value, wrong data is an
error naming the file, damaged cache entries are rebuilt, episode requests are bounded.

Oracles: a marker file a malicious pickle would create (it must not exist), hand-computed pixel values
(65535 -> 255, 32768 -> 128), PIL's own 8-bit conversion where the definitions coincide, the arrays
the fixtures wrote, and plain pickle loading the same benign files.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time

import numpy as np
import pytest
from PIL import Image

from fewshot_cam.data import cache
from fewshot_cam.data.checks import check_masks
from fewshot_cam.data.datasets import load_split
from fewshot_cam.data.episodes import load_episode_file, make_episodes, save_episode_file
from fewshot_cam.data.safe_pickle import safe_load, safe_loads
from fewshot_cam.errors import UserError


def dump(obj, path, protocol=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def mini_root(root, class_dict, image_data=None, split="train"):
    if image_data is None:
        image_data = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    return dump({"image_data": image_data, "class_dict": class_dict}, root / f"mini-imagenet-cache-{split}.pkl")


def raises(match_parts, fn, *args, **kwargs):
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(str(p) in message for p in match_parts), message
    return message


# ---------------------------------------------------------------- 1. data files never run code
class Runs:
    """A pickle whose __reduce__ calls ``fn(arg)`` when loaded."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


@pytest.mark.parametrize("fn, refused", [(os.system, "posix.system"), (eval, "builtins.eval"),
                                         (exec, "builtins.exec")])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, fn, refused, protocol):
    marker = tmp_path / "ran"
    arg = f"touch {marker}" if fn is os.system else f"open({str(marker)!r}, 'w').close()"
    path = mini_root(tmp_path / "root", {"a": [0, 1], "b": [2, 3]})
    data = pickle.loads(path.read_bytes())
    data["class_dict"]["a"] = Runs(fn, arg)
    dump(data, path, protocol)
    raises([path, refused, "refused"], load_split, "mini-imagenet", tmp_path / "root", "train", image_size=8)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the oracle: plain pickle does run it
    assert marker.exists()


def test_refused_global_anywhere_in_tiered_files(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "tiered-imagenet"
    dump([b"x"], folder / "train_images_png.pkl")
    dump({"label_specific": [0], "junk": Runs(os.system, f"touch {marker}")}, folder / "train_labels.pkl")
    raises([folder / "train_labels.pkl", "posix.system"], load_split, "tiered-imagenet", tmp_path, "train")
    assert not marker.exists()


def test_codecs_only_latin1_and_no_other_globals(tmp_path):
    assert safe_loads(pickle.dumps(b"\x00\xffab", protocol=2)) == b"\x00\xffab"  # _codecs.encode(.., latin1)
    evil = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(evil)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        safe_loads(b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R.")  # bytes(2**30): 1 GiB of zeros
    assert safe_loads(pickle.dumps(b"", protocol=2)) == b""  # bytes() with no argument is data
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(np.random.default_rng(0)))
    raises([path, "numpy.random"], safe_load, path)


# A Python 2 pickle (protocol 2) as Python 2 numpy writes it: numpy.core.multiarray._reconstruct,
# py2 str (SHORT_BINSTRING 'U') for keys, dtype codes and the raw array bytes, __builtin__.set.
PY2_ARRAY = (b"cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02U\x01b\x87q\x03R"
             b"q\x04(K\x01K\x03\x85cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xff"
             b"J\xff\xff\xff\xffK\x00tb\x89U\x03\x01\x02\xfftb")
PY2_PICKLE = (b"\x80\x02}q\x10(U\x05label" + PY2_ARRAY + b"U\x04name]q\x11(U\x03n01U\x04n\xe902e"
              b"U\x03setc__builtin__\nset\n]q\x12K\x01a\x85Ru.")


def test_python2_pickle_loads_like_plain_pickle(tmp_path):
    path = tmp_path / "py2.pkl"
    path.write_bytes(PY2_PICKLE)
    ours, ref = safe_load(path), pickle.loads(PY2_PICKLE, encoding="latin1")
    np.testing.assert_array_equal(ours["label"], np.array([1, 2, 255], np.uint8))
    assert ours["name"] == ref["name"] == ["n01", "n\xe902"] and ours["set"] == {1}
    as_bytes = safe_load(path, encoding="bytes")
    assert as_bytes[b"name"] == [b"n01", b"n\xe902"]


def test_every_benign_value_type_round_trips():
    value = {"a": np.arange(6, dtype=np.uint8).reshape(2, 3), "f": np.asfortranarray(np.ones((2, 3))),
             "o": np.array([1, "x"], dtype=object), "s": np.int64(3), "t": np.str_("q"), "b": b"xy",
             "l": [1, 2.5, None, True, 1j, (1,)], "set": {1}, "fs": frozenset([2]), "ba": bytearray(b"z")}
    for protocol in range(6):
        back = safe_loads(pickle.dumps(value, protocol=protocol))
        for key in value:
            if isinstance(value[key], np.ndarray):
                np.testing.assert_array_equal(back[key], value[key])
                assert back[key].dtype == value[key].dtype
            else:
                assert back[key] == value[key] and type(back[key]) is type(value[key])


# ---------------------------------------------------------------- 2. every PNG mode, by value
def folder_with(tmp_path, image: Image.Image, fmt="PNG", mask: Image.Image | None = None):
    root = tmp_path / "folder"
    (root / "train" / "c").mkdir(parents=True)
    image.save(root / "train" / "c" / f"x.{fmt.lower()}", format=fmt)
    if mask is not None:
        (root / "masks" / "train" / "c").mkdir(parents=True)
        mask.save(root / "masks" / "train" / "c" / "x.png")
    return root


def load_pixels(root, size):
    return load_split("imagefolder", root, "train", image_size=size)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 255, 256, 32768, 65535, 128]], np.uint16).repeat(6, 0)
    for mode, order in (("I;16", "<u2"), ("I;16B", ">u2")):
        im = Image.frombytes(mode, (6, 6), values.astype(order).tobytes())
        got = load_pixels(folder_with(tmp_path / mode.replace(";", "_"), im), 6).images[0]
        np.testing.assert_array_equal(got[0, :, 0], [0, 1, 1, 128, 255, 0])  # round(v / 257), by hand
        assert (got == got[..., :1]).all()  # grey -> R = G = B


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "LA", "RGBA"])
def test_8bit_modes_match_pil_convert(tmp_path, mode):
    rng = np.random.default_rng(3)
    im = Image.fromarray(rng.integers(0, 256, (10, 10, 4), dtype=np.uint8), "RGBA").convert(mode)
    got = load_pixels(folder_with(tmp_path, im), 10).images[0]
    np.testing.assert_array_equal(got, np.asarray(im.convert("RGB")))


def test_palette_with_transparency_and_cmyk_jpeg(tmp_path):
    palette = Image.new("P", (8, 8))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.paste(1, (0, 0, 4, 8))
    palette.info["transparency"] = 0
    got = load_pixels(folder_with(tmp_path / "p", palette), 8).images[0]
    assert tuple(got[0, 0]) == (200, 100, 50) and tuple(got[0, 7]) == (10, 20, 30)  # colour kept, alpha dropped
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    got = load_pixels(folder_with(tmp_path / "cmyk", cmyk, "JPEG"), 8).images[0]
    assert got[..., 0].min() > 240 and got[..., 1:].max() < 15


def test_int_and_float_modes():
    """Modes no PNG holds (TIFF readers give them): I as 16-bit data, F as [0, 1]; out of range refused."""
    from fewshot_cam.data.pixels import BadPixels, to_rgb

    ints = Image.fromarray(np.array([[0, 32768, 65535, 100]], np.int32), "I")
    np.testing.assert_array_equal(np.asarray(to_rgb(ints))[0, :, 0], [0, 128, 255, 0])
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0, 0.25]], np.float32), "F")
    np.testing.assert_array_equal(np.asarray(to_rgb(floats))[0, :, 0], [0, 128, 255, 64])
    for bad in (Image.fromarray(np.full((2, 2), 7.0, np.float32), "F"),
                Image.fromarray(np.full((2, 2), -1, np.int32), "I")):
        with pytest.raises(BadPixels, match="outside"):
            to_rgb(bad)


def test_masks_read_as_values_and_must_match_the_image(tmp_path):
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    palette = Image.new("P", (8, 8))
    palette.putpalette([0, 0, 0] * 256)  # every index is black: a colour reading sees no foreground
    palette.paste(3, (0, 0, 4, 8))
    masks = load_pixels(folder_with(tmp_path / "p", image, mask=palette), 8).masks[0]
    assert masks[:, :4].all() and not masks[:, 4:].any()
    sixteen = Image.frombytes("I;16", (8, 8), (np.arange(64, dtype="<u2") * 1000).tobytes())
    masks = load_pixels(folder_with(tmp_path / "s", image, mask=sixteen), 8).masks[0]
    np.testing.assert_array_equal(masks.ravel(), np.arange(64) > 0)
    root = folder_with(tmp_path / "size", image, mask=Image.new("L", (9, 8), 1))
    raises([root / "masks" / "train" / "c" / "x.png", "9 x 8", "8 x 8"], load_pixels, root, 8)


def test_mask_policy_error_or_skip():
    masks = np.zeros((4, 3, 3), bool)
    masks[0, 0, 0] = True
    masks[2] = True
    masks[3, 1] = True
    raises(["data.pkl", "image 1", "all background", "2 of 4"], check_masks, masks, "data.pkl")
    np.testing.assert_array_equal(check_masks(masks, "data.pkl", policy="skip"), [0, 3])
    raises(["unknown mask policy"], check_masks, masks, "x", policy="ignore")


# ---------------------------------------------------------------- 3. wrong data is an error
def test_zero_size_and_empty_images(tmp_path):
    path = mini_root(tmp_path / "zero", {"a": [0]}, np.zeros((1, 0, 0, 3), np.uint8))
    raises([path, "zero-size"], load_split, "mini-imagenet", path.parent, "train", image_size=8)
    folder = tmp_path / "tiered" / "tiered-imagenet"
    dump([b""], folder / "train_images_png.pkl")
    dump({"label_specific": [0]}, folder / "train_labels.pkl")
    raises(
        [folder / "train_images_png.pkl", "[image 0]", "0 bytes"], load_split, "tiered-imagenet", folder.parent, "train"
    )


@pytest.mark.parametrize("class_dict, expected", [
    ({"a": [0, 1], "b": [1, 2]}, "row 1 is in two classes, 'a' and 'b'"),
    ({"a": [0, 0], "b": [2]}, "lists row 0 twice"),
    ({"a": [0, 1.5]}, "class_dict['a'][1] is 1.5, not an integer"),
    ({"a": [0, "1"]}, "class_dict['a'][1] is '1', not an integer"),
    ({"a": [0, True]}, "not an integer"),
    ({"a": np.array([0.0, 1.0])}, "must hold integers, found dtype float64"),
    ({"a": [0, 9]}, "names row 9, but image_data has 6 rows"),
    ({"a": 3}, "must be a list of integers, found int"),
    ({None: [0]}, "class_dict key None is not a class name"),
])
def test_bad_class_dict(tmp_path, class_dict, expected):
    path = mini_root(tmp_path, class_dict)
    raises([path, expected], load_split, "mini-imagenet", tmp_path, "train", image_size=8)


def csv_root(tmp_path, text: bytes):
    (tmp_path / "images").mkdir(parents=True)
    for name in ("a1.jpg", "a2.jpg", "b1.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / name)
    (tmp_path / "train.csv").write_bytes(text)
    return tmp_path / "train.csv"


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"filename,label\na1.jpg,a\na2.jpg,a\na1.jpg,a\n", "line 4: a1.jpg already on line 2 (duplicate row)"),
        (
            b"filename,label\na1.jpg,a\nb1.jpg,b\na1.jpg,b\n",
            "line 4: a1.jpg already on line 2 (shared by classes 'a' and 'b')",
        ),
        (b"filename,label\na1.jpg,\n", "line 2: empty label"),
        (b"filename,label\n", "split 'train' lists no images"),
        (b'filename,label\na1.jpg,"' + b"a" * 200_000 + b'"\n', "not a csv file (field larger than field limit"),
        (b"filename,label\na1.jpg,a\nb1.jpg,\xe9t\xe9\n", "not UTF-8 text: byte 0xe9 at offset 31 (line 3)"),
    ],
    ids=["duplicate row", "shared row", "empty label", "no rows", "huge field", "not utf-8"],
)
def test_bad_csv(tmp_path, text, expected):
    path = csv_root(tmp_path, text)
    raises([path, expected], load_split, "mini-imagenet", tmp_path, "train", image_size=8)


def test_tiered_labels_must_be_integers(tmp_path):
    folder = tmp_path / "tiered-imagenet"
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    dump([png.getvalue()] * 2, folder / "train_images_png.pkl")
    dump({"label_specific": np.array([0.0, 1.7])}, folder / "train_labels.pkl")
    raises([folder / "train_labels.pkl", "label_specific must hold integers, found dtype float64"],
           load_split, "tiered-imagenet", tmp_path, "train")
    dump({"label_specific": [0, -1]}, folder / "train_labels.pkl")
    raises([folder / "train_labels.pkl", "-1"], load_split, "tiered-imagenet", tmp_path, "train")


def test_non_utf8_csv_from_the_cli(tmp_path, cli):
    csv_root(tmp_path, b"filename,label\na1.jpg,\xff\n")
    code, out, err = cli("data", "info", "--dataset", "mini-imagenet", "--root", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "offset 22" in err and "train.csv" in err


# ---------------------------------------------------------------- episode files
@pytest.fixture
def episode_file(tmp_path):
    split = load_split("synthetic", None, "test", image_size=16)
    path = save_episode_file(make_episodes(split, 3, 1, 2, 4, seed=1), split, tmp_path / "e.json")
    return split, path, json.loads(path.read_text())


def _edit(record, key, value):
    if callable(value):
        value(record)
    else:
        record[key] = value


@pytest.mark.parametrize(
    "key, value, expected",
    [
        (
            "episode_images",
            lambda r: r["episode_images"][2][1].__setitem__(2, r["episode_images"][2][1][0]),
            "episode 2 uses an image twice",
        ),
        (
            "episode_classes",
            lambda r: r["episode_classes"][3].__setitem__(1, r["episode_classes"][3][0]),
            "episode 3 uses a class twice",
        ),
        ("episode_images", lambda r: r["episode_images"][1][0].__setitem__(0, 1.5), "must hold integers"),
        ("episode_classes", lambda r: r["episode_classes"][0].__setitem__(0, 99), "episode 0 names class index 99"),
        (
            "episode_images",
            lambda r: r["episode_images"][1][0].__setitem__(0, 10**6),
            "episode 1 has an image index beyond",
        ),
        (
            "episode_images",
            lambda r: r["episode_images"][0][0].__setitem__(0, -1),
            "episode 0 has a negative image index",
        ),
        ("ways", 3.0, "ways must be a whole number >= 1, found 3.0"),
        ("shots", 0, "shots must be a whole number >= 1, found 0"),
        ("n", True, "n must be a whole number >= 1, found True"),
        ("seed", "1", "seed must be a whole number or null"),
        ("classes", lambda r: r["classes"].__setitem__(1, r["classes"][0]), "is listed twice"),
        ("episode_images", lambda r: r["episode_images"][0].__setitem__(0, [0]), "not a rectangular array"),
    ],
)
def test_bad_episode_file(episode_file, key, value, expected):
    split, path, record = episode_file
    _edit(record, key, value)
    path.write_text(json.dumps(record))
    raises([path, expected], load_episode_file, path, split)


def test_episodes_make_limits(cli, tmp_path):
    base = ["episodes", "make", "--dataset", "synthetic", "--split", "test", "--out", tmp_path / "e.json"]
    for extra, expected in [(["--n", "1000000000"], "GiB of memory"), (["--n", "0"], "got 0"),
                            (["--seed", "-3"], "seed must be a whole number >= 0, got -3"),
                            (["--ways", "500"], "ways=500 exceeds")]:
        code, out, err = cli(*base, *extra)
        assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "e.json").exists()


# ---------------------------------------------------------------- 4. cache robustness
@pytest.fixture
def cached_split(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CAM_CACHE", str(tmp_path / "cache"))
    image_data = np.random.default_rng(5).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    mini_root(tmp_path / "root", {"a": [0, 1], "b": [2, 3]}, image_data)
    first = load_split("mini-imagenet", tmp_path / "root", "train", image_size=8)
    (entry,) = (tmp_path / "cache").iterdir()
    return tmp_path / "root", entry, np.array(first.images)


@pytest.mark.parametrize("damage", ["empty images", "truncated images", "empty labels", "bad meta", "short labels"])
def test_damaged_cache_entry_is_rebuilt(cached_split, damage):
    root, entry, images = cached_split
    if damage == "empty images":
        (entry / "images.npy").write_bytes(b"")
    elif damage == "truncated images":
        data = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(data[: len(data) // 2])
    elif damage == "empty labels":
        (entry / "labels.npy").write_bytes(b"")
    elif damage == "bad meta":
        (entry / "meta.json").write_text("{")
    else:
        np.save(entry / "labels.npy", np.zeros(3, np.int64))
    with pytest.warns(UserWarning, match="rebuilding damaged cache entry"):
        again = load_split("mini-imagenet", root, "train", image_size=8)
    np.testing.assert_array_equal(again.images, images)
    third = load_split("mini-imagenet", root, "train", image_size=8)  # the rebuilt entry is whole
    np.testing.assert_array_equal(third.images, images)


def test_leftover_temporary_folders_are_removed(cached_split, tmp_path):
    root, entry, _ = cached_split
    stale = entry.parent / ".tmp-killed"
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"half")
    (stale / cache.LOCK).write_bytes(b"")  # lock file of a writer that died: nobody holds it
    old = entry.parent / ".tmp-old"
    old.mkdir()
    os.utime(old, (time.time() - cache.STALE_SECONDS - 5,) * 2)
    young = entry.parent / ".tmp-starting"  # a writer that has not taken its lock yet
    young.mkdir()
    mini_root(tmp_path / "root2", {"a": [0, 1]})
    load_split("mini-imagenet", tmp_path / "root2", "train", image_size=8)
    assert not stale.exists() and not old.exists() and young.exists()
    assert not any(p.name.startswith(".tmp-") and p != young for p in entry.parent.iterdir())


def test_cache_files_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_CAM_CACHE", str(tmp_path / "cache"))
    mini_root(tmp_path / "root", {"a": [0, 1]})
    events = []
    real_fsync, real_rename = os.fsync, os.rename
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "rename", lambda a, b: events.append("rename") or real_rename(a, b))
    load_split("mini-imagenet", tmp_path / "root", "train", image_size=8)
    assert "rename" in events and events.index("rename") >= 4  # images, labels, meta, folder


# ---------------------------------------------------------------- the CLI
def test_data_info_on_a_malicious_pickle(cli, tmp_path):
    """The issue's example: ``data info`` on a mini-ImageNet pickle whose __reduce__ runs a command."""
    marker = tmp_path / "ran"
    path = mini_root(tmp_path / "root", {"a": [0, 1], "b": Runs(os.system, f"touch {marker}")})
    code, out, err = cli("data", "info", "--dataset", "mini-imagenet", "--root", tmp_path / "root")
    assert code == 2 and err.count("\n") == 1 and str(path) in err and "posix.system" in err
    assert not marker.exists()


def test_data_show_to_an_unwritable_place(cli, tmp_path):
    (tmp_path / "file").write_text("")
    for out, expected in [
        (tmp_path / "file" / "g.png", "cannot write here"),
        (tmp_path / "g.xyz", "unknown picture format"),
    ]:
        code, _, err = cli("data", "show", "--dataset", "synthetic", "--split", "test", "--out", out)
        assert code == 2 and err.count("\n") == 1 and expected in err and str(out) in err


def test_split_masks_named_by_image_and_class(tmp_path):
    image = Image.fromarray(np.zeros((6, 6, 3), np.uint8))
    root = tmp_path / "folder"
    for cls, fill in (("a", 1), ("b", 0)):
        (root / "train" / cls).mkdir(parents=True)
        (root / "masks" / "train" / cls).mkdir(parents=True)
        image.save(root / "train" / cls / "x.png")
        mask = np.zeros((6, 6), np.uint8)
        mask[:3] = fill
        Image.fromarray(mask).save(root / "masks" / "train" / cls / "x.png")
    split = load_split("imagefolder", root, "train", image_size=6)  # loading itself is fine
    from fewshot_cam.data.checks import check_split_masks

    raises([root, "image 1 (class b)", "all background"], check_split_masks, split, np.array([0, 1]))
    np.testing.assert_array_equal(check_split_masks(split, np.array([1, 0]), policy="skip"), [1])
