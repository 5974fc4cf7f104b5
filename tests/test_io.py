"""``fewshot_cam.io`` (atomic writes, JSON results) and ``fewshot_cam.registry``."""

import json
import os

import pytest

from fewshot_cam.errors import UserError
from fewshot_cam.io import atomic_open, atomic_write, read_json, write_json
from fewshot_cam.registry import Registry


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "x.bin"
    atomic_write(path, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as f:
            f.write(b"half of the new cont")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.bin"]
    atomic_write(path, "new")
    assert path.read_bytes() == b"new" and oct(path.stat().st_mode & 0o777) == "0o644"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_folder_is_a_user_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserError, match="not writable"):
            atomic_write(tmp_path / "x", b"1")
    finally:
        tmp_path.chmod(0o700)


def test_missing_parent_that_is_a_file_is_a_user_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="cannot write here"):
        atomic_write(tmp_path / "f" / "x.json", b"1")


def test_json_results_carry_format_first(tmp_path):
    path = write_json(tmp_path / "r.json", {"a": 1, "format": "ignored"}, "fmt/1")
    assert list(json.loads(path.read_text())) == ["format", "a"]
    assert read_json(path, "fmt/1") == {"format": "fmt/1", "a": 1}
    with pytest.raises(UserError, match="'fmt/1' is not 'other/1'"):
        read_json(path, "other/1")
    (tmp_path / "bad.json").write_bytes(b"\xff{")
    with pytest.raises(UserError, match="bad.json: not a JSON file"):
        read_json(tmp_path / "bad.json")


def test_registry_lists_valid_names_on_unknown():
    reg = Registry("backbone")

    @reg.register("b", help="bee")
    def b():
        return 2

    reg.register("a", lambda: 1, help="ay")
    assert reg.names() == ["b", "a"] and reg.get("b") is b and "a" in reg
    assert reg.describe() == "b: bee; a: ay"
    with pytest.raises(UserError, match="unknown backbone 'c'; choose from b, a"):
        reg.get("c")
    with pytest.raises(ValueError, match="twice"):
        reg.register("a", lambda: 3)
