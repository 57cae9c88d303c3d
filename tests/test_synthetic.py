"""Tests of the synthetic cohort generator: the claims of docs/synthetic_cohort.md, checked on real output."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_recur.synthetic import (
    DEFECT_CAUSES,
    ZONE_PROBABILITIES,
    ZONES,
    assign_defects,
    generate_patient,
    make_cohort,
)
from nnunet_recur.synthetic.relapse import draw_relapse_volume_cc, draw_zone

# ---------------------------------------------------------------------------------------------- helpers


def arr(image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def pet_on_ct(patient) -> np.ndarray:
    return arr(sitk.Resample(patient.pet, patient.ct, sitk.Transform(), sitk.sitkLinear, 0.0))


def read_dicom_folder(folder: Path) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """All DICOM files below a folder, grouped by Modality (files that pydicom cannot parse are skipped)."""
    groups: dict[str, list] = collections.defaultdict(list)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        groups[ds.Modality].append((path, ds))
    return groups


def slice_z(ds) -> float:
    return float(ds.ImagePositionPatient[2])


def seconds(tm: str) -> float:
    return int(tm[0:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:])


def suvbw_factor(ds) -> float:
    """SUVbw = Bq/ml * weight[g] / (dose[Bq] * 2^(-(SeriesTime - RadiopharmaceuticalStartTime) / T1/2))."""
    radio = ds.RadiopharmaceuticalInformationSequence[0]
    decay = 2.0 ** (
        -(seconds(ds.SeriesTime) - seconds(radio.RadiopharmaceuticalStartTime))
        / float(radio.RadionuclideHalfLife)
    )
    return float(ds.PatientWeight) * 1000.0 / (float(radio.RadionuclideTotalDose) * decay)


def rasterise(contours, ct_slices) -> np.ndarray:
    """Voxel-centre-inside-polygon, even-odd rule, contours matched to CT slices by z (test's own code)."""
    from matplotlib.path import Path as MplPath

    first = ct_slices[0][1]
    ny, nx = int(first.Rows), int(first.Columns)
    x0, y0 = float(first.ImagePositionPatient[0]), float(first.ImagePositionPatient[1])
    dy, dx = (float(v) for v in first.PixelSpacing)
    yy, xx = np.mgrid[0:ny, 0:nx]
    centres = np.column_stack([x0 + xx.ravel() * dx, y0 + yy.ravel() * dy])
    zs = np.array([slice_z(ds) for _, ds in ct_slices])
    mask = np.zeros((len(zs), ny, nx), dtype=bool)
    for c in contours:
        pts = np.asarray(c.ContourData, dtype=float).reshape(-1, 3)
        k = int(np.argmin(np.abs(zs - pts[0, 2])))
        assert abs(zs[k] - pts[0, 2]) < 1e-3
        inside = MplPath(pts[:, :2]).contains_points(centres).reshape(ny, nx)
        mask[k] ^= inside
    return mask


def dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def patients():
    """60 small patients in memory (seed 21)."""
    return [generate_patient(21, i, "small") for i in range(60)]


@pytest.fixture(scope="module")
def paired_cohorts(tmp_path_factory):
    """The same 3 patients as inhouse-dicom and inhouse-nifti."""
    root = tmp_path_factory.mktemp("paired")
    make_cohort(root / "dicom", 3, 4, "inhouse-dicom", "small")
    make_cohort(root / "nifti", 3, 4, "inhouse-nifti", "small")
    return root


# ------------------------------------------------------------------------------------ generator claims


def test_grids_differ_and_small_is_small():
    p = generate_patient(0, 0, "small")
    ct, pet = p.ct, p.pet
    assert ct.GetSpacing() != pet.GetSpacing()
    assert ct.GetOrigin() != pet.GetOrigin()
    assert ct.GetSize() != pet.GetSize()
    n_ct = int(np.prod(ct.GetSize()))
    assert 100_000 <= n_ct <= 300_000, n_ct
    # PET slice planes fall between CT planes and PET covers the CT axially
    dz = (pet.GetOrigin()[2] - ct.GetOrigin()[2]) % ct.GetSpacing()[2]
    assert 0.25 * ct.GetSpacing()[2] < dz < 0.75 * ct.GetSpacing()[2]
    assert pet.GetOrigin()[2] < ct.GetOrigin()[2]
    assert (
        pet.TransformIndexToPhysicalPoint((0, 0, pet.GetSize()[2] - 1))[2]
        > ct.TransformIndexToPhysicalPoint((0, 0, ct.GetSize()[2] - 1))[2]
    )


def test_demo_profile_is_small_field_of_view_at_twice_the_voxel():
    """`demo` (recur demo on a CPU): ~8x fewer CT voxels than `small`, same mm extent, PET still resampled."""
    from nnunet_recur.synthetic.geometry import grids_for

    small = grids_for("small", np.random.default_rng(0))
    demo = grids_for("demo", np.random.default_rng(0))
    extent = [sz * sp for sz, sp in zip(small.ct.size, small.ct.spacing, strict=True)]
    extent_demo = [sz * sp for sz, sp in zip(demo.ct.size, demo.ct.spacing, strict=True)]
    assert np.allclose(extent, extent_demo, rtol=0.03), (extent, extent_demo)
    assert 6 <= np.prod(small.ct.size) / np.prod(demo.ct.size) <= 10
    p = generate_patient(0, 0, "demo")
    assert p.ct.GetSize() == demo.ct.size and p.ct.GetSpacing() != p.pet.GetSpacing()
    import SimpleITK as sitk

    relapse = sitk.GetArrayFromImage(p.relapse) > 0
    cc = relapse.sum() * np.prod(p.ct.GetSpacing()) / 1000.0
    assert relapse.any() and cc == pytest.approx(p.info["relapse_cc"], rel=0.01)


def test_paper_grid_spacings():
    from nnunet_recur.synthetic.geometry import grids_for

    g = grids_for("paper", np.random.default_rng(0))
    assert g.ct.size[:2] == (512, 512) and g.ct.spacing == (0.9765, 0.9765, 2.0)
    assert g.pet.spacing == (2.036, 2.036, 2.0)
    assert g.pet.origin != g.ct.origin and g.pet.size != g.ct.size


def test_anatomy_hu_and_brain_suv(patients):
    for p in patients[:5]:
        hu = arr(p.ct)
        body = arr(p.body) > 0
        brain = arr(p.brain) > 0
        assert np.median(hu[~body]) < -950  # air outside
        assert hu.max() > 700  # bone
        assert np.median(hu[brain]) == pytest.approx(33, abs=15)
        pet = pet_on_ct(p)
        core_brain = ndimage.binary_erosion(brain)
        assert pet[core_brain].mean() > 6.0
        assert np.median(pet[body & ~brain & (arr(p.gtvp) == 0)]) == pytest.approx(1.0, abs=0.5)


def test_gtvp_suvmax_in_range_and_hot_core_eccentric(patients):
    suvmax = []
    for p in patients:
        pet = pet_on_ct(p)
        suvmax.append(pet[arr(p.gtvp) > 0].max())
    assert 4.5 < min(suvmax) and max(suvmax) < 32
    assert 6 < np.median(suvmax) < 25


def test_zone_rule_frequencies():
    rng = np.random.default_rng(123)
    n = 20000
    counts = collections.Counter(draw_zone(rng) for _ in range(n))
    for zone, p in zip(ZONES, ZONE_PROBABILITIES, strict=True):
        assert counts[zone] / n == pytest.approx(p, abs=0.015), zone


def test_relapse_volume_distribution():
    rng = np.random.default_rng(7)
    v = np.array([draw_relapse_volume_cc(rng) for _ in range(20000)])
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    assert (
        med == pytest.approx(8, abs=0.4)
        and q1 == pytest.approx(6, abs=0.4)
        and q3 == pytest.approx(18, abs=1)
    )


def test_generated_relapses_follow_the_rule(patients):
    """Zones recomputed from the masks agree with the recorded zone; frequencies and volumes are sane."""
    zones, volumes, n_components = collections.Counter(), [], collections.Counter()
    pet_gtv_percentiles = []
    for p in patients:
        gtv = (arr(p.gtvp) > 0) | (arr(p.gtvn) > 0)
        relapse = arr(p.relapse)
        sp = p.ct.GetSpacing()
        dist = ndimage.distance_transform_edt(~gtv, sampling=(sp[2], sp[1], sp[0]))
        pet = pet_on_ct(p)
        records = p.info["points_of_origin"]
        n_components[len(records)] += 1
        labelled, n = ndimage.label(relapse > 0, structure=np.ones((3, 3, 3)))
        assert n == len(records)  # separate components, not even 26-connected
        volumes.append(float((relapse > 0).sum()) * np.prod(sp) / 1000)
        for rec in records:
            idx = tuple(rec["po_index_zyx"])
            assert relapse[idx] == rec["component"]
            point = p.ct.TransformIndexToPhysicalPoint(tuple(int(v) for v in idx[::-1]))
            assert np.allclose(point, rec["position_mm"], atol=1e-2)
            zone = rec["zone"]
            zones[zone] += 1
            if zone in ("pet_gtv", "gtv_rest"):
                assert gtv[idx]
            elif zone == "ctv1":
                assert not gtv[idx] and dist[idx] <= 10.0 + 1e-6
            elif zone == "ctv3":
                assert 15.0 < dist[idx] <= 30.0 + 1e-6
            else:
                assert dist[idx] > 30.0
            if zone == "pet_gtv":
                pet_gtv_percentiles.append((pet[gtv] < pet[idx]).mean())
    total = sum(zones.values())
    assert zones["pet_gtv"] / total == pytest.approx(0.55, abs=0.15)
    assert zones["pet_gtv"] + zones["gtv_rest"] > zones["ctv1"] + zones["ctv3"] + zones["outside"]
    assert set(zones) >= {"pet_gtv", "gtv_rest", "ctv1", "outside"}
    assert 1 <= n_components[2] <= 30
    q1, med, q3 = np.percentile(volumes, [25, 50, 75])
    assert 5 <= med <= 13 and 3.5 <= q1 <= 9 and 11 <= q3 <= 28
    # learnable: the PO of a PET-GTV relapse sits in the hottest part of the GTV
    assert np.median(pet_gtv_percentiles) > 0.75


def test_small_case_is_fast(tmp_path):
    generate_patient(0, 99, "small")  # warm-up (imports)
    t0 = time.perf_counter()
    make_cohort(tmp_path / "one", 1, 99, "inhouse-nifti", "small")
    elapsed = time.perf_counter() - t0
    print(f"small inhouse-nifti case: {elapsed:.3f} s")
    assert elapsed < 5.0


# --------------------------------------------------------------------------------------- determinism


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_deterministic_per_seed(tmp_path):
    make_cohort(tmp_path / "a", 2, 5, "inhouse-nifti")
    make_cohort(tmp_path / "b", 2, 5, "inhouse-nifti")
    make_cohort(tmp_path / "c", 2, 6, "inhouse-nifti")
    a, b, c = (_digest(tmp_path / x) for x in "abc")
    assert a == b
    assert a["patients/PAT_5_001/ct.nii.gz"] != c["patients/PAT_6_001/ct.nii.gz"]


def test_dicom_deterministic(tmp_path):
    make_cohort(tmp_path / "a", 1, 5, "inhouse-dicom")
    make_cohort(tmp_path / "b", 1, 5, "inhouse-dicom")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


# ------------------------------------------------------------------------------------------- formats


def test_layout_and_ground_truth(paired_cohorts):
    for fmt in ("dicom", "nifti"):
        out = paired_cohorts / fmt
        names = sorted(p.name for p in (out / "patients").iterdir())
        assert names == ["PAT_4_001", "PAT_4_002", "PAT_4_003"]
        gt = out / "ground_truth"
        for name in names:
            for suffix in ("_relapse", "_gtv", "_brain"):
                img = sitk.ReadImage(str(gt / f"{name}{suffix}.nii.gz"))
                assert img.GetPixelID() == sitk.sitkUInt8 and set(np.unique(arr(img))) <= {0, 1}
            info = json.loads((gt / f"{name}.json").read_text())
            assert info["synthetic"] is True and info["points_of_origin"]
            assert info["points_of_origin"][0]["zone"] in ZONES
        assert json.loads((gt / "defects.json").read_text()) == {}
    nifti = paired_cohorts / "nifti" / "patients" / "PAT_4_001"
    assert sorted(p.name for p in nifti.iterdir()) == [
        "ct.nii.gz",
        "dose.nii.gz",
        "gtv.nii.gz",
        "pet.nii.gz",
        "plan.json",
        "relapse.nii.gz",
    ]
    ct = sitk.ReadImage(str(nifti / "ct.nii.gz"))
    gt_relapse = sitk.ReadImage(str(paired_cohorts / "nifti" / "ground_truth" / "PAT_4_001_relapse.nii.gz"))
    assert ct.GetSize() == gt_relapse.GetSize() and ct.GetOrigin() == gt_relapse.GetOrigin()
    assert np.array_equal(arr(sitk.ReadImage(str(nifti / "relapse.nii.gz"))), arr(gt_relapse))


def test_dicom_valid_uids_and_suv(paired_cohorts):
    for name in ("PAT_4_001", "PAT_4_002"):
        folder = paired_cohorts / "dicom" / "patients" / name
        nifti = paired_cohorts / "nifti" / "patients" / name
        assert all("CT" not in p.name and "PT" not in p.name for p in folder.rglob("*"))  # names say nothing
        groups = read_dicom_folder(folder)
        assert set(groups) == {"CT", "PT", "RTSTRUCT", "RTPLAN", "RTDOSE"} and len(groups["RTSTRUCT"]) == 1
        assert len(groups["RTPLAN"]) == 1 and len(groups["RTDOSE"]) == 1
        ct_slices = sorted(groups["CT"], key=lambda t: slice_z(t[1]))
        pet_slices = sorted(groups["PT"], key=lambda t: slice_z(t[1]))
        rs = groups["RTSTRUCT"][0][1]
        rt = groups["RTPLAN"] + groups["RTDOSE"]
        frames = {ds.FrameOfReferenceUID for _, ds in ct_slices + pet_slices + rt}
        assert len(frames) == 1
        frame = frames.pop()
        assert rs.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == frame
        assert {ds.StudyInstanceUID for _, ds in ct_slices + pet_slices + [(None, rs)]} == {
            rs.StudyInstanceUID
        }
        assert str(ct_slices[0][1].PatientName).startswith("Synthetic^Patient")
        assert ct_slices[0][1].PatientID.startswith("SYN-4-")
        ct_sops = {ds.SOPInstanceUID for _, ds in ct_slices}
        series = (
            rs.ReferencedFrameOfReferenceSequence[0]
            .RTReferencedStudySequence[0]
            .RTReferencedSeriesSequence[0]
        )
        assert series.SeriesInstanceUID == ct_slices[0][1].SeriesInstanceUID
        assert {i.ReferencedSOPInstanceUID for i in series.ContourImageSequence} == ct_sops

        # SimpleITK reads both series; CT equals the NIfTI export voxel for voxel
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(p) for p, _ in ct_slices])
        ct_img = reader.Execute()
        ct_nii = sitk.ReadImage(str(nifti / "ct.nii.gz"))
        assert np.array_equal(arr(ct_img).astype(np.int16), arr(ct_nii))
        assert np.allclose(ct_img.GetOrigin(), ct_nii.GetOrigin(), atol=1e-3)
        assert np.allclose(ct_img.GetSpacing(), ct_nii.GetSpacing(), atol=1e-4)
        reader.SetFileNames([str(p) for p, _ in pet_slices])
        pet_img = reader.Execute()
        pet_nii = sitk.ReadImage(str(nifti / "pet.nii.gz"))
        assert np.allclose(pet_img.GetOrigin(), pet_nii.GetOrigin(), atol=1e-3)
        assert pet_img.GetSize() == pet_nii.GetSize()

        # SUVbw from the headers (per-slice slope) equals the intended SUV
        ds0 = pet_slices[0][1]
        assert ds0.Units == "BQML" and ds0.DecayCorrection == "START"
        factor = suvbw_factor(ds0)
        suv = np.stack(
            [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for _, ds in pet_slices]
        )
        suv = suv * factor
        assert len({ds.RescaleSlope for _, ds in pet_slices}) > 1
        err = np.abs(suv - arr(pet_nii)).max()
        assert err < 1e-3, err
        assert np.abs(arr(pet_img) * factor - arr(pet_nii)).max() < 1e-3  # SimpleITK applies per-slice slopes

        # RTSTRUCT: names and polygon round trip against the ground truth
        rois = {r.ROINumber: r.ROIName for r in rs.StructureSetROISequence}
        assert {"BODY", "GTV_T", "Relapse Volume_T"} <= set(rois.values())
        contours = {rois[c.ReferencedROINumber]: c.ContourSequence for c in rs.ROIContourSequence}
        gt = paired_cohorts / "dicom" / "ground_truth"
        relapse = rasterise(contours["Relapse Volume_T"], ct_slices)
        if "Relapse Volume_N" in contours:
            relapse |= rasterise(contours["Relapse Volume_N"], ct_slices)
        assert dice(relapse, arr(sitk.ReadImage(str(gt / f"{name}_relapse.nii.gz"))) > 0) >= 0.95
        gtv = rasterise(contours["GTV_T"], ct_slices)
        if "GTV_N" in contours:
            gtv |= rasterise(contours["GTV_N"], ct_slices)
        assert dice(gtv, arr(sitk.ReadImage(str(gt / f"{name}_gtv.nii.gz"))) > 0) >= 0.95
        for seq in contours.values():
            assert all(c.ContourGeometricType == "CLOSED_PLANAR" for c in seq)


def test_hecktor_layout(tmp_path):
    names = make_cohort(tmp_path, 7, 2, "hecktor")
    assert names[:3] == ["CHUM-001", "CHUP-001", "HGJ-001"] and names[6] == "CHUM-002"
    for name in names[:2]:
        ct = sitk.ReadImage(str(tmp_path / "imagesTr" / f"{name}__CT.nii.gz"))
        pt = sitk.ReadImage(str(tmp_path / "imagesTr" / f"{name}__PT.nii.gz"))
        label = sitk.ReadImage(str(tmp_path / "labelsTr" / f"{name}.nii.gz"))
        assert pt.GetPixelID() == sitk.sitkFloat32 and pt.GetSpacing() != ct.GetSpacing()
        assert label.GetSize() == ct.GetSize() and label.GetOrigin() == ct.GetOrigin()
        assert set(np.unique(arr(label))) <= {0, 1, 2} and (arr(label) == 1).any()
        assert (tmp_path / "ground_truth" / f"{name}_relapse.nii.gz").exists()


# ------------------------------------------------------------------------------------------- defects


def test_defect_assignment_rule():
    for n in (10, 20, 37):
        got = assign_defects(n, 3)
        assert sorted(collections.Counter(got.values())) == sorted(DEFECT_CAUSES)
    assert len(assign_defects(46, 3)) == 10
    assert len(assign_defects(6, 3)) == 3
    assert assign_defects(20, 3) == assign_defects(20, 3) != assign_defects(20, 4)


def defect_cohort(out, fmt: str) -> tuple:
    """Ten patients of `fmt` with defects; each cause of the paper stands in defects.json exactly once."""
    make_cohort(out, 10, 8, fmt, defects=True)
    defects = json.loads((out / "ground_truth" / "defects.json").read_text())
    assert sorted(defects.values()) == sorted(DEFECT_CAUSES)
    return out, defects


def test_dicom_defects_are_real(tmp_path):
    out, defects = defect_cohort(tmp_path / "d", "inhouse-dicom")
    for name, cause in defects.items():
        folder = out / "patients" / name
        groups = read_dicom_folder(folder)
        ct = sorted((ds for _, ds in groups["CT"]), key=slice_z)
        if cause == "pet_missing":
            assert "PT" not in groups
        elif cause == "relapse_missing":
            names = [r.ROIName for r in groups["RTSTRUCT"][0][1].StructureSetROISequence]
            assert not any("Relapse" in n for n in names) and "GTV_T" in names
        elif cause == "pet_corrupt":
            broken = 0
            for _, ds in groups["PT"]:
                try:
                    _ = ds.pixel_array
                except Exception:
                    broken += 1
            assert broken == 1
        elif cause == "uneven_spacing":
            a, b = (float(v) for v in ct[0].PixelSpacing)
            assert a != b
        elif cause == "missing_slice":
            steps = np.diff([slice_z(ds) for ds in ct])
            assert np.isclose(steps.max(), 2 * steps.min())
        else:
            pytest.fail(f"{name}: defect {cause!r} has no check here")
        info = json.loads((out / "ground_truth" / f"{name}.json").read_text())
        assert info["defect"] == cause
    clean = sorted(set(p.name for p in (out / "patients").iterdir()) - set(defects))
    steps = np.diff(sorted(slice_z(ds) for _, ds in read_dicom_folder(out / "patients" / clean[0])["CT"]))
    assert np.allclose(steps, steps[0])


def test_nifti_defects_are_real(tmp_path):
    out, defects = defect_cohort(tmp_path / "n", "inhouse-nifti")
    for name, cause in defects.items():
        folder = out / "patients" / name
        files = {p.name for p in folder.iterdir()}
        if cause == "pet_missing":
            assert "pet.nii.gz" not in files
        elif cause == "relapse_missing":
            assert "relapse.nii.gz" not in files and "gtv.nii.gz" in files
        elif cause == "pet_corrupt":
            # note: SimpleITK reads a truncated .nii.gz WITHOUT error (missing voxels come back as 0);
            # the gzip stream check is what catches it
            with pytest.raises(EOFError):
                gzip.open(folder / "pet.nii.gz").read()
        elif cause == "uneven_spacing":
            sx, sy, _ = sitk.ReadImage(str(folder / "ct.nii.gz")).GetSpacing()
            assert sx != sy
        elif cause == "missing_slice":
            ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
            gtv = sitk.ReadImage(str(folder / "gtv.nii.gz"))
            assert ct.GetSize()[2] == gtv.GetSize()[2] - 1
        else:
            pytest.fail(f"{name}: defect {cause!r} has no check here")


# ------------------------------------------------------------------------------------------ CLI, reruns


def test_cli_all_formats(tmp_path):
    from typer.testing import CliRunner

    from nnunet_recur.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["synth", "--help"]).output
    assert "Example" in help_text and "--defects" in help_text
    for fmt in ("inhouse-dicom", "inhouse-nifti", "hecktor"):
        out = tmp_path / fmt
        result = runner.invoke(app, ["synth", str(out), "--cases", "2", "--seed", "1", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert len(list((out / "ground_truth").glob("*.json"))) == 2 + 2  # patients + cohort + defects
        where = out / ("imagesTr" if fmt == "hecktor" else "patients")
        assert any(where.iterdir())
    bad = runner.invoke(
        app, ["synth", str(tmp_path / "hecktor"), "--cases", "2", "--seed", "2", "--format", "hecktor"]
    )
    assert bad.exit_code != 0 and "seed" in bad.output


def test_rerun_skips_finished_patients(tmp_path):
    seen = []
    make_cohort(tmp_path, 2, 1, "inhouse-nifti")
    ct = tmp_path / "patients" / "PAT_1_001" / "ct.nii.gz"
    stamp = ct.stat().st_mtime_ns
    make_cohort(tmp_path, 3, 1, "inhouse-nifti", progress=lambda name, skipped: seen.append((name, skipped)))
    assert seen == [("PAT_1_001", True), ("PAT_1_002", True), ("PAT_1_003", False)]
    assert ct.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob(".partial-*")) and not list(tmp_path.rglob(".*.tmp*"))


def test_po_probability_is_the_density_the_sampler_draws_from():
    """po_probability (used by bench/po_capture_bound.py) must equal the sampler's frequencies, including the
    redraw of a zone that has no voxel (here: no `outside` zone) and the SUV^4 weighting in `pet_gtv`."""
    from nnunet_recur.synthetic.relapse import ZoneMap, po_probability, sample_po

    rng = np.random.default_rng(5)
    codes = np.zeros((4, 5, 6), dtype=np.int8)
    codes[0, :2] = 1  # pet_gtv: 12 voxels
    codes[0, 2:] = 2  # gtv_rest
    codes[1] = 3  # ctv1
    codes[2, :, :3] = 9  # CTV2 band: never a PO
    codes[3] = 4  # ctv3; no `outside` voxel at all
    zones = ZoneMap(codes=codes, box=(slice(0, 4), slice(0, 5), slice(0, 6)))
    uptake = rng.uniform(1.0, 3.0, codes.shape)
    p = po_probability(zones, uptake)
    assert p.sum() == pytest.approx(1.0)
    assert p[codes == 9].sum() == 0 and p[codes == 0].sum() == 0
    counts = np.zeros(codes.shape)
    draws = 40000
    for _ in range(draws):
        po = None
        while po is None:
            po = sample_po(zones, uptake, draw_zone(rng), rng)
        counts[po] += 1
    freq = counts / draws
    assert freq[codes == 1].sum() == pytest.approx(p[codes == 1].sum(), abs=0.01)  # 0.55 / 0.90
    assert p[codes == 1].sum() == pytest.approx(0.55 / 0.90)
    hot = np.argmax(np.where(codes == 1, uptake, -1))
    assert freq.ravel()[hot] == pytest.approx(p.ravel()[hot], rel=0.1)
    assert np.abs(freq - p).max() < 0.01
