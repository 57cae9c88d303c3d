"""atomic_io: the one atomic writer (layout options that keep each output's bytes, nothing half-written)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nnunet_recur.atomic_io import atomic_path, json_text, write_json_atomic, write_text_atomic


def test_json_layout_options_give_the_bytes_each_output_always_had(tmp_path):
    data = {"b": 1, "a": [np.int64(2), np.float32(0.5)]}
    write_json_atomic(tmp_path / "default.json", data)
    assert (tmp_path / "default.json").read_text() == '{\n  "b": 1,\n  "a": [\n    2,\n    0.5\n  ]\n}\n'
    # the plans file's layout: indent 4, insertion order, no final newline
    assert json_text({"b": 1, "a": 2}, indent=4, final_newline=False) == '{\n    "b": 1,\n    "a": 2\n}'
    # the synthetic ground truth's layout: sorted keys
    assert json_text({"b": 1, "a": 2}, sort_keys=True).startswith('{\n  "a": 2')
    assert json_text({"x": 1}, indent=1, final_newline=False) == json.dumps({"x": 1}, indent=1)


def test_nan_refused_unless_allowed():
    with pytest.raises(ValueError):
        json_text({"x": math.nan})
    assert json_text({"x": math.nan}, allow_nan=True) == '{\n  "x": NaN\n}\n'


def test_failed_write_is_one_line_and_leaves_nothing(tmp_path):
    (tmp_path / "out.json").mkdir()  # os.replace onto a folder fails like a full disk would
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "out.json", "x")
    assert "cannot write" in str(info.value) and "\n" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "mask.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path  # format suffix kept for ITK
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
