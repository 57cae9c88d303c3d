"""scripts/compare_outputs.py: a real difference is found, the documented volatile things are not."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_outputs.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_folder(root: Path, *, pid: int, seconds: float, dice: str, log: str) -> Path:
    """A small run folder that names itself, as the demo's journal and job specs do."""
    (root / "jobs").mkdir(parents=True)
    (root / "logs").mkdir()
    journal = {"job_id": str(pid), "started": 1e9 + seconds, "seconds": seconds, "spec": f"{root}/jobs"}
    (root / "journal.json").write_text(json.dumps(journal, indent=1))
    result = {"rc": 0, "node": f"host{pid}", "dice": 0.5}
    (root / "jobs" / "result.json").write_text(json.dumps(result, indent=1))
    (root / "timing.csv").write_text(f"case,dice,seconds\nA,0.5,{seconds}\n")
    (root / "report.md").write_text(
        f"# Report\n\nwritten 2026-12-07T19:{pid % 60:02d}:33Z\n\n| case | Dice | seconds |\n|---|---|---|\n"
        f"| A | {dice} | {seconds} |\n"
    )
    (root / "image.bin").write_bytes(bytes(range(64)))
    (root / "logs" / "run.log").write_text(f"pid {pid} took {seconds} s\n")
    (root / ".journal.lock").write_text(f"recur demo (pid {pid})")
    (root / "report.html").write_text(f"<p>{root}: 2026-12-07T19:{pid % 60:02d}:33</p>")
    debug = {  # nnU-Net's debug.json: object reprs and the log name carry an address and a time
        "logger": f"<MetaLogger object at 0x7f53c{pid:05x}>",
        "log_file": f"{root}/training_log_2026_12_7_19_{pid % 60}_34.txt",
        "git_commit": f"{pid:040x}",
        "timing_s": {"prepare": seconds, "total": 2 * seconds},
    }
    (root / "debug.json").write_text(json.dumps(debug, indent=4))
    (root / "training_log_2026_12_7_19_00_00.txt").write_text(log)
    return root


def test_volatile_things_are_masked_and_a_real_difference_is_found(tool, tmp_path):
    left = _run_folder(tmp_path / "a", pid=101, seconds=1.25, dice="0.50", log="epoch 0 took 3 s\n")
    right = _run_folder(tmp_path / "b", pid=202, seconds=9.5, dice="0.50", log="epoch 0 took 4 s\n")
    report_path = tmp_path / "report.json"
    assert tool.main([str(left), str(right), "--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["identical"] == ["image.bin"]
    masked = ["debug.json", "jobs/result.json", "journal.json", "report.html", "report.md", "timing.csv"]
    assert report["identical_after_masking"] == masked
    assert report["skipped"] == [".journal.lock", "logs/run.log", "training_log_2026_12_7_19_00_00.txt"]
    assert report["equal"] is True

    # A real change in a Markdown cell, a JSON value, a binary file and a JSON layout, and a file on one side.
    (right / "report.md").write_text((right / "report.md").read_text().replace("| 0.50 |", "| 0.51 |"))
    (right / "jobs" / "result.json").write_text(json.dumps({"rc": 0, "node": "x", "dice": 0.5}, indent=2))
    (right / "image.bin").write_bytes(bytes(range(1, 65)))
    (right / "extra.json").write_text("{}")
    (left / "timing.csv").write_text("case,dice,seconds\nA,0.49,1.25\n")
    assert tool.main([str(left), str(right), "--report", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["differing"] == ["image.bin", "jobs/result.json", "report.md", "timing.csv"]
    assert report["only_right"] == ["extra.json"]
    assert report["identical_after_masking"] == ["debug.json", "journal.json", "report.html"]
    assert report["equal"] is False

    # The same differences, with two of the files known to differ between runs of the same code.
    noise_path = tmp_path / "noise.json"
    noise_path.write_text(json.dumps({"differing": ["image.bin", "timing.csv"]}))
    assert tool.main([str(left), str(right), "--noise", str(noise_path), "--report", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["differing"] == ["jobs/result.json", "report.md"]
    assert report["differing_noise"] == ["image.bin", "timing.csv"]


def test_files_that_differ_only_as_run_to_run_noise_pass(tool, tmp_path):
    left, right = tmp_path / "a", tmp_path / "b"
    for folder, byte in ((left, b"\x01"), (right, b"\x02")):
        (folder / "pred").mkdir(parents=True)
        (folder / "pred" / "seg.dcm").write_bytes(b"DICM" + byte)
        (folder / "same.nii.gz").write_bytes(b"\x1f\x8b same")
    noise_path = tmp_path / "noise.json"
    noise_path.write_text(json.dumps({"differing": ["pred/seg.dcm"]}))
    assert tool.main([str(left), str(right)]) == 1
    assert tool.main([str(left), str(right), "--noise", str(noise_path)]) == 0
    assert tool.compare(left, right, noise={"pred/seg.dcm"})["identical"] == ["same.nii.gz"]


def test_alias_masks_the_two_source_checkouts_and_nothing_more(tool, tmp_path):
    left, right = tmp_path / "a", tmp_path / "b"
    left.mkdir(), right.mkdir()
    (left / "spec.json").write_text('{"cwd": "/src/one", "extTrainer": "/src/one/ext"}')
    (right / "spec.json").write_text('{"cwd": "/src/two", "extTrainer": "/src/two/ext"}')
    assert tool.compare(left, right)["differing"] == ["spec.json"]
    assert tool.compare(left, right, [("/src/one", "/src/two")])["identical_after_masking"] == ["spec.json"]


def test_missing_folder_is_bad_input(tool, tmp_path, capsys):
    assert tool.main([str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: not a folder"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dicom(path: Path, uid: str, time: str, pixels: bytes) -> None:
    from dicom_files import new_dataset

    ds = new_dataset("SEG", "1.2.840.10008.5.1.4.1.1.66.4")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
    ds.ContentTime, ds.BitsAllocated, ds.PixelData = time, 8, pixels
    ds.save_as(path, enforce_file_format=True)


def test_explain_differences_accepts_fresh_uids_and_times_but_not_other_changes(tool, tmp_path):
    import torch

    explain = _load("explain_differences")
    left, right = tmp_path / "a", tmp_path / "b"
    for folder, uid, time, stamp in ((left, "1.2.3.1", "194446", 1.0), (right, "1.2.3.2", "195418", 2.0)):
        (folder / "fold_0").mkdir(parents=True)
        _dicom(folder / "seg.dcm", uid, time, b"\x00\x01")
        logging = {"epoch_end_timestamps": [stamp], "train_losses": [0.5]}
        torch.save(
            {"network_weights": {"w": torch.ones(2)}, "logging": logging},
            folder / "fold_0" / "checkpoint_final.pth",
        )
        (folder / "fold_0" / "progress.png").write_bytes(b"png" + bytes([int(stamp)]))
    report_path = tmp_path / "report.json"
    assert tool.main([str(left), str(right), "--report", str(report_path)]) == 1
    assert explain.main([str(report_path)]) == 0
    files = explain.explain(json.loads(report_path.read_text()))
    assert files["seg.dcm"]["differing"] == ["ContentTime", "MediaStorageSOPInstanceUID", "SOPInstanceUID"]
    assert files["fold_0/progress.png"]["explained"] is True

    # Real changes: the pixels of the DICOM object, one weight of the checkpoint.
    _dicom(right / "seg.dcm", "1.2.3.2", "195418", b"\x00\x02")
    ckpt = right / "fold_0" / "checkpoint_final.pth"
    torch.save(
        {"network_weights": {"w": torch.tensor([1.0, 1.5])}, "logging": torch.load(ckpt)["logging"]}, ckpt
    )
    assert tool.main([str(left), str(right), "--report", str(report_path)]) == 1
    assert explain.main([str(report_path)]) == 1
    files = explain.explain(json.loads(report_path.read_text()))
    assert files["seg.dcm"]["unexpected"] == ["PixelData"]
    assert files["fold_0/checkpoint_final.pth"]["unexpected"] == ["/network_weights/w"]
    assert files["fold_0/progress.png"]["explained"] is False
