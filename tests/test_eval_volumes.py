"""Inputs of the evaluation: case lists, splits, dataset look-up, and which modules it may import."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_recur.evaluation import volumes
from nnunet_recur.evaluation.volumes import EvaluationError, MissingCaseError

EVALUATION = Path(volumes.__file__).parent


def test_cases_from_comma_list_and_file(tmp_path):
    assert volumes.parse_cases("RECUR_001, RECUR_002,") == ["RECUR_001", "RECUR_002"]
    listing = tmp_path / "val.txt"
    listing.write_text("RECUR_004\n\n# a comment\nRECUR_007  # inline\n")
    assert volumes.parse_cases(str(listing)) == ["RECUR_004", "RECUR_007"]
    assert volumes.parse_cases(None) is None


def test_cases_from_splits_and_selection(tmp_path):
    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps([{"train": ["A", "B"], "val": ["C"]}, {"train": ["C"], "val": ["A", "B"]}]))
    assert volumes.cases_from_splits(splits, 1) == ["A", "B"]
    with pytest.raises(EvaluationError, match="no fold 5"):
        volumes.cases_from_splits(splits, 5)
    assert volumes.select_cases(["A", "B", "C"], ["C", "A"], tmp_path) == ["C", "A"]
    with pytest.raises(MissingCaseError, match="Z"):
        volumes.select_cases(["A", "B"], ["A", "Z"], tmp_path)


def test_cases_in_ignores_temp_files_and_other_channels(tmp_path):
    for name in ["R_1_0001.nii.gz", "R_2_0001.nii.gz", "R_1_0000.nii.gz", ".R_3_0001.tmp12.nii.gz"]:
        (tmp_path / name).write_bytes(b"")
    assert volumes.cases_in(tmp_path, "_0001") == ["R_1", "R_2"]


def test_find_dataset_by_id_and_name(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    (raw / "Dataset501_RecurInhouse").mkdir(parents=True)
    (raw / "Dataset502_Other").mkdir()
    monkeypatch.setenv("nnUNet_raw", str(raw))
    assert volumes.find_dataset("501").name == "Dataset501_RecurInhouse"
    assert volumes.find_dataset("Dataset502_Other").name == "Dataset502_Other"
    with pytest.raises(EvaluationError, match="503"):
        volumes.find_dataset("503")


def test_evaluation_imports_no_trainer_and_only_the_converters_readers():
    pattern = re.compile(
        r"^\s*(from|import)\s+nnunet_recur\.(trainers|dataset_conversion|workflow|synthetic)"
    )
    # The NIfTI guard both sides share lives in the neutral nnunet_recur/nifti_header.py. dp-qa reads RT Dose
    # and RTSTRUCT files with the converter's readers (one reader per input kind), lazily.
    allowed = {
        "dp_qa.py": {
            "from nnunet_recur.dataset_conversion.errors import ConversionError",
            "from nnunet_recur.dataset_conversion.rtdose import read_rtdose",
            "from nnunet_recur.dataset_conversion.rtstruct import rasterise_roi, read_rtstruct",
        },
    }
    for source in EVALUATION.glob("*.py"):
        for line in source.read_text(encoding="utf-8").splitlines():
            if line.strip() in allowed.get(source.name, set()):
                continue
            assert not pattern.match(line), f"{source.name}: {line}"


def test_cli_import_stays_light_and_scoring_imports_no_converter():
    code = (
        "import sys, nnunet_recur.evaluation.cli as c; "
        "names = ('numpy', 'SimpleITK', 'scipy', 'matplotlib', 'torch', 'nnunetv2'); "
        "print(','.join(m for m in names if m in sys.modules)); "
        "import nnunet_recur.evaluation.comparison, nnunet_recur.evaluation.volumes; "
        "print(sorted(m for m in sys.modules if m.startswith(('nnunet_recur.dataset_conversion', "
        "'nnunet_recur.trainers', 'torch'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["", "[]"]


def test_float_nifti_with_a_damaged_gzip_crc_is_refused_not_scored(tmp_path):
    """The one-pass float reader reads the stream to its end, so gzip's CRC check refuses the file with the
    reader guard's message (before, only ITK's later header read happened to stop it, with its own)."""
    import numpy as np
    import SimpleITK as sitk

    path = tmp_path / "pet.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(path), useCompression=True)
    assert volumes.read_volume(path).array.sum() == 120
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer; ISIZE (the last 4 bytes) stays right
    path.write_bytes(bytes(data))
    with pytest.raises(EvaluationError, match="pet.nii.gz: unreadable or truncated NIfTI"):
        volumes.read_volume(path)
