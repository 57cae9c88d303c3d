"""The hostile corpus (tests/hostile_corpus.py) through `recur convert inhouse`, as a user runs it:
no traceback, every hostile patient excluded with its named cause or converted correctly, every clean
patient byte-identical to a run over the clean patients alone."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hostile_corpus import EXPECTED, LOOKALIKES, NAMED_FILES, TWINS, make_corpus  # noqa: E402

pytestmark = pytest.mark.slow


def recur_convert(src: Path, root: Path, tag: str, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("nnUNet_preprocessed", None)
    cmd = [
        str(Path(sys.executable).parent / "recur"),
        "convert",
        "inhouse",
        str(src),
        "--dataset-id",
        "13",
        "--raw-dir",
        str(root / f"raw_{tag}"),
        "--report-dir",
        str(root / f"report_{tag}"),
        "--id-map",
        str(root / f"ids_{tag}.csv"),
        "--crop",
        "none",
        *extra,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=root)


def case_digests(root: Path, tag: str) -> dict[str, dict[str, str]]:
    """patient -> {file kind: sha256} of its written files (wherever the split put them)."""
    dataset = root / f"raw_{tag}" / "Dataset013_RecurOPSCC"
    with open(root / f"ids_{tag}.csv") as fh:
        ids = {row["patient"]: row["case"] for row in csv.DictReader(fh)}
    out = {}
    for patient, case in ids.items():
        files = {}
        for path in dataset.glob(f"*/{case}*.nii.gz"):
            kind = path.parent.name[:-2] + path.name[len(case) :]
            files[kind] = hashlib.sha256(path.read_bytes()).hexdigest()
        out[patient] = files
    return out


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    make_corpus(root / "corpus")
    clean = recur_convert(root / "corpus" / "clean", root, "clean")
    mixed = recur_convert(root / "corpus" / "mixed", root, "mixed")
    return root, clean, mixed


def test_no_traceback_and_exit_zero(corpus_runs):
    _, clean, mixed = corpus_runs
    for run in (clean, mixed):
        assert "Traceback" not in run.stdout + run.stderr, run.stderr[-3000:]
        assert run.returncode == 0, run.stdout + run.stderr


def report_rows(path: Path) -> dict[str, dict]:
    """Rows of a report CSV by patient name: look-alike names are shown escaped (`ascii()`), formula-like
    names carry a leading quote."""
    shown = {ascii(name): name for name in LOOKALIKES}
    with open(path) as fh:
        return {shown.get(r["patient"], r["patient"].lstrip("'")): r for r in csv.DictReader(fh)}


def test_every_hostile_patient_has_its_named_cause(corpus_runs):
    root, _, mixed = corpus_runs
    rows = report_rows(root / "report_mixed" / "cases.csv")
    got = {p: (r["cause"] or r["status"]) for p, r in rows.items()}
    assert got == EXPECTED
    details = {p: r["detail"] for p, r in report_rows(root / "report_mixed" / "exclusions.csv").items()}
    for patient, file_name in NAMED_FILES.items():  # the damaged file is named, not just the patient
        assert file_name in details[patient], details[patient]
    assert "2 hidden (dot-prefixed) folder(s) skipped: ..H_hidden2, .H_hidden" in mixed.stdout


def test_chosen_series_recorded_and_bowtie_warned(corpus_runs):
    root, _, _ = corpus_runs
    with open(root / "report_mixed" / "cases.csv") as fh:
        rows = {row["patient"]: row for row in csv.DictReader(fh)}
    assert rows["H_nac_twin"]["pet_series"].startswith("PET AC [")
    assert "crosses itself (bow-tie)" in rows["H_bowtie"]["notes"]
    assert "RS.dcm" in rows["H_bowtie"]["notes"]


def test_formula_cells_are_escaped(corpus_runs):
    root, _, _ = corpus_runs
    for name in ("cases.csv",):
        text = (root / "report_mixed" / name).read_text()
        assert "\n'=HYPERLINK(" in text.replace('"', "")
        assert "\n=HYPERLINK" not in text.replace('"', "")
    assert "\n=HYPERLINK" not in (root / "ids_mixed.csv").read_text().replace('"', "")


def test_clean_patients_identical_to_a_clean_only_run(corpus_runs):
    root, _, _ = corpus_runs
    clean, mixed = case_digests(root, "clean"), case_digests(root, "mixed")
    mixed = {p.lstrip("'"): files for p, files in mixed.items()}
    assert set(clean) == {p for p, want in EXPECTED.items() if p.startswith("C_")}
    for patient, files in clean.items():
        # every image, mask and label file of the case, the PET z-score channel (_0002) included
        assert len(files) == 6 and files == mixed[patient], patient
    for twin, original in TWINS.items():  # hostile patients that must convert exactly like their twin
        assert mixed[twin] == clean[original], twin


def test_issue19_inputs_are_reported(corpus_runs):
    root, _, mixed = corpus_runs
    rows = report_rows(root / "report_mixed" / "cases.csv")
    details = {p: r["detail"] for p, r in report_rows(root / "report_mixed" / "exclusions.csv").items()}
    assert "contours lie between CT slices" in rows["H_relapse_off_plane"]["notes"]
    assert "relapse.nii.gz: soft label" in rows["N_soft_relapse"]["notes"]
    assert "soft label" not in rows["N_relapse_0_255"]["notes"]
    # the structure set's ContourImageSequence names the lost slice by its SOP Instance UID
    assert "SOPInstanceUID 1.2.826.0.1.3680043.8.498.13." in details["H_ct_referenced_slice_gone"]
    assert "qform (code 1) and sform (code 1) disagree: origins 30.00 mm apart" in details["N_qform_30mm_off"]
    assert "DecayCorrection ADMIN" in details["H_decay_admin_factor_1"]
    for name in ("PAT_X.zip", "notes.txt"):
        assert rows[name]["status"] == "skipped"
    assert "unpack it first" in rows["PAT_X.zip"]["notes"]
    assert "2 other entries skipped: PAT_X.zip, notes.txt (an archive: unpack it first)" in mixed.stdout
    # names that look identical: warned about, and shown escaped so that the rows differ
    assert "look-alike patient names" in mixed.stdout
    assert mixed.stderr.count("warning: patient folders") == 2
    text = (root / "report_mixed" / "cases.csv").read_text()
    assert "'N_caf\\xe9'" in text and "'N_cafe\\u0301'" in text and "'N_space '" in text
