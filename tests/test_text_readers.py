"""Every reader of a user's text file (CUB tables, split csvs, ImageNet synsets and LOC boxes) turns bytes that
are not UTF-8 into a one-line UserError naming the file and the offset, never a UnicodeDecodeError; a damaged
metrics.jsonl in a run folder counts as no finished epoch."""

from __future__ import annotations

from pathlib import Path

import pytest

from fewshot_cam.data.cub import read_table
from fewshot_cam.data.cub_splits import read_split_csv
from fewshot_cam.data.imagenet_boxes import LocBoxes, read_synsets
from fewshot_cam.errors import UserError
from fewshot_cam.models.runs import completed_epochs

READERS = {
    "cub table": (lambda p: read_table(p, 1), b"1 Black_footed_Albatross\n2 \xff\xfe\n"),
    "split csv": (read_split_csv, b"filename,label\n\xff.jpg,n01\n"),
    "synsets": (read_synsets, b"n01 tench\nn02 \xe9t\xe9\n"),
    "LOC csv": (LocBoxes, b"ImageId,PredictionString\nn01_1,n01 1 2 3 \xff\n"),
}


@pytest.mark.parametrize("name", READERS)
def test_non_utf8_bytes_are_a_user_error_naming_the_file(tmp_path: Path, name: str):
    read, data = READERS[name]
    path = tmp_path / "file.txt"
    path.write_bytes(data)
    with pytest.raises(UserError, match="not UTF-8 text.*line 2") as err:
        read(path)
    assert str(path) in str(err.value)


def test_damaged_metrics_count_as_no_epoch(tmp_path: Path):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"epoch": 3}\n\xff\xfe')
    assert completed_epochs(tmp_path) == 0
    (tmp_path / "metrics.jsonl").write_bytes(b'{"epoch": 3}\n')
    assert completed_epochs(tmp_path) == 3
