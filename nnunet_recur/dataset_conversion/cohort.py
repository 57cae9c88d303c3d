"""Convert a whole cohort into one nnU-Net raw dataset: the driver behind `recur convert hecktor|inhouse`.

Two passes, because the split and the auto crop box depend on which patients pass the checks:
1. prepare: each patient is loaded, checked and put on its CT grid (`PreparedCase`), measured (GTV
   centre, extent of GTV ∪ relapse) and staged uncompressed in the dataset's temporary folder; a
   failed patient becomes an exclusion and the batch carries on;
2. split the converted patients (paper 60/20/20 or cv5), derive the crop box from train+val, then crop
   and write every case (temporary names, then os.replace).
The steps, run under the dataset lock: `check_patients` (pass 1), `choose_split_and_box`, `write_cases`
(pass 2), `remove_stale_cases`, `write_reports`. A new patient at inference is prepared by
new_patient.py, not here.

Reruns: per-patient results are remembered in REPORT_DIR/conversion_state.json (it names patients,
so it stays out of nnUNet_raw), keyed by a fingerprint of the patient's files and the settings; a case
whose inputs, settings, box and part are unchanged and whose files are all present is skipped, so a
rerun rewrites nothing and its outputs stay byte-identical. Case ids are assigned to the sorted source
folder names (excluded patients keep their number free), so they do not move when a patient is fixed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_recur.dataset_conversion.crop import (
    CROP_MODES,
    CropBox,
    derive_auto_box,
    fixed_box,
    fixed_mm_box,
    no_box,
)
from nnunet_recur.dataset_conversion.errors import (
    NON_DATA_CAUSES,
    UNREADABLE,
    WORKER_KILLED,
    WRITE_FAILED,
    ConversionError,
)
from nnunet_recur.dataset_conversion.hecktor import HecktorCase
from nnunet_recur.dataset_conversion.inhouse import InhouseOptions
from nnunet_recur.dataset_conversion.label_values import DEFAULT_LABEL_THRESHOLD
from nnunet_recur.dataset_conversion.locking import dataset_lock
from nnunet_recur.dataset_conversion.nnunet_writer import (
    MASK_NAMES,
    DatasetLocationError,
    DatasetWriter,
    base_dataset_json,
    check_no_id_clash,
    dataset_folder_name,
    hecktor_dataset_labels,
    raw_root,
    relapse_dataset_labels,
    write_json_atomic,
    write_text_atomic,
)
from nnunet_recur.dataset_conversion.prepare import CaseMeasurement
from nnunet_recur.dataset_conversion.quality import Exclusion, exclusions_csv, safe_csv_row, summary_line
from nnunet_recur.dataset_conversion.source_entries import (
    HIDDEN_FOLDER_REASON,
    SkippedEntry,
    lookalike_groups,
    lookalike_warning,
    shown_name,
    skipped_entries,
)
from nnunet_recur.dataset_conversion.split import DEFAULT_SEED, SPLIT_MODES, Split, make_split

STATE_VERSION = 2  # 2: geometry staged in float64, written files verified, chosen series recorded
CASE_PREFIX = "RECUR"
CONVERTED = "converted"
EXCLUDED = "excluded"
SKIPPED = "skipped"


@dataclass(frozen=True)
class SourceCase:
    """One patient of the source cohort: `patient` names it in the reports (the source folder name)."""

    patient: str
    kind: str  # "inhouse" or "hecktor"
    folder: str | None = None  # inhouse patient folder
    hecktor: HecktorCase | None = None

    def files(self) -> list[Path]:
        if self.hecktor is not None:
            return list(self.hecktor.paths)
        found = []
        for root, dirs, names in os.walk(self.folder):
            dirs.sort()
            found.extend(Path(root) / n for n in sorted(names))
        return found


@dataclass(frozen=True)
class ConversionSettings:
    kind: str  # "inhouse" or "hecktor"
    dataset_id: int
    name: str
    raw_dir: str | None = None
    preprocessed_dir: str | None = None
    crop: str = "auto"
    split: str | None = "paper"  # None: every case is a training case (HECKTOR pre-training)
    seed: int = DEFAULT_SEED
    report_dir: str | None = None
    id_map: str | None = None
    workers: int = 1
    inhouse: InhouseOptions | None = None
    labels: str = "gtvp"  # HECKTOR label set
    with_masks: bool = True
    description: str = ""


@dataclass
class CaseRecord:
    patient: str
    case: str
    fingerprint: str
    status: str = ""
    cause: str = ""
    detail: str = ""
    measurement: CaseMeasurement | None = None
    notes: list[str] = field(default_factory=list)
    output_key: str = ""
    part: str = ""
    series: dict[str, str] = field(default_factory=dict)

    # The record's keys spelled out (alike in shape to other report rows, e.g. evaluation's per_case row):
    # from_json below reads these same keys back.
    def to_json(self) -> dict:
        return {
            "case": self.case,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "cause": self.cause,
            "detail": self.detail,
            "measurement": self.measurement.to_json() if self.measurement else None,
            "notes": list(self.notes),
            "output_key": self.output_key,
            "part": self.part,
            "series": dict(self.series),
        }

    @classmethod
    def from_json(cls, patient: str, record: dict) -> CaseRecord:
        m = record.get("measurement")
        return cls(
            patient=patient,
            case=record["case"],
            fingerprint=record["fingerprint"],
            status=record.get("status", ""),
            cause=record.get("cause", ""),
            detail=record.get("detail", ""),
            measurement=CaseMeasurement.from_json(m) if m else None,
            notes=list(record.get("notes", [])),
            output_key=record.get("output_key", ""),
            part=record.get("part", ""),
            series=dict(record.get("series", {})),
        )


@dataclass
class ConversionSummary:
    """What a conversion did; `line` is the one-line summary the CLI prints."""

    dataset_folder: Path
    report_dir: Path
    n_patients: int
    converted: dict[str, str]  # patient -> case
    exclusions: list[Exclusion]
    split: Split | None
    box: CropBox
    splits_path: Path | None
    splits_note: str
    written: int
    skipped: int
    line: str
    hidden: list[str] = field(default_factory=list)  # dot-prefixed folders of SRC, listed, not converted
    strays: list[SkippedEntry] = field(default_factory=list)  # other non-patient entries of SRC, listed
    warnings: list[str] = field(default_factory=list)  # look-alike patient names

    @property
    def failed_for_non_data_reasons(self) -> list[Exclusion]:
        return [e for e in self.exclusions if e.cause in NON_DATA_CAUSES]

    @property
    def exit_code(self) -> int:
        """0 when something converted and no case failed for a reason other than its data (disk full,
        killed worker); 1 otherwise."""
        return 0 if self.converted and not self.failed_for_non_data_reasons else 1


# -- fingerprints and keys -------------------------------------------------------------------------------
def _sha1(payload) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(source: SourceCase) -> str:
    """Changes when any input file of the patient is added, removed, resized or touched."""
    entries = []
    for path in source.files():
        try:
            stat = path.stat()
        except OSError:  # dangling symlink, symlink loop: the reader excludes the patient, with the cause
            stat = path.lstat()
        entries.append([str(path), stat.st_size, stat.st_mtime_ns])
    return _sha1(entries)


def prepare_settings_key(settings: ConversionSettings) -> str:
    """The settings that change what pass 1 produces for a patient."""
    return _sha1(
        {
            "version": STATE_VERSION,
            "kind": settings.kind,
            "inhouse": vars(settings.inhouse) if settings.inhouse else None,
            "labels": settings.labels if settings.kind == "hecktor" else None,
            "masks": settings.with_masks,
        }
    )


def case_ids(patients: Sequence[str], prefix: str = CASE_PREFIX) -> dict[str, str]:
    """Pseudonyms RECUR_001, ... in sorted order of the source names (deterministic across reruns)."""
    ordered = sorted(patients)
    width = max(3, len(str(len(ordered))))
    return {p: f"{prefix}_{i:0{width}d}" for i, p in enumerate(ordered, start=1)}


# -- workers (module level: picklable for the process pool) ----------------------------------------------
def _load(source: SourceCase, settings: ConversionSettings):
    if source.kind == "hecktor":
        from nnunet_recur.dataset_conversion.hecktor import load_hecktor_case

        return load_hecktor_case(source.hecktor, settings.labels)
    from nnunet_recur.dataset_conversion.inhouse import load_inhouse_patient

    return load_inhouse_patient(source.folder, settings.inhouse or InhouseOptions())


def _init_worker() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def _write_failure_cause(exc: BaseException) -> str:
    """Storage errors (ENOSPC, EIO, a written file that fails verification) are write_failed."""
    return WRITE_FAILED if isinstance(exc, OSError) else UNREADABLE


def _short_detail(exc: BaseException, root: str | None) -> str:
    text = str(exc).replace("\n", " ").strip()
    if root:
        text = text.replace(root.rstrip("/") + "/", "")
    return text


def prepare_worker(
    source: SourceCase, settings: ConversionSettings, stage_dir: str, root: str | None
) -> dict:
    """Pass 1 for one patient: load + check + measure + stage. Never raises (the batch carries on)."""
    from nnunet_recur.dataset_conversion.dose_conversion import stage_dose
    from nnunet_recur.dataset_conversion.prepare import measure_case, stage_case

    try:
        shutil.rmtree(stage_dir, ignore_errors=True)  # leftovers of an interrupted run
        case = _load(source, settings)
        measurement = measure_case(case)
        case.notes.extend(stage_dose(source, settings, case, Path(stage_dir)))  # before stage_case: complete
        stage_case(case, Path(stage_dir))
        return {
            "status": CONVERTED,
            "measurement": measurement.to_json(),
            "notes": case.notes,
            "series": dict(case.series),
        }
    except ConversionError as exc:
        return {"status": EXCLUDED, "cause": exc.cause, "detail": _short_detail(exc, root)}
    except MemoryError as exc:
        return {"status": EXCLUDED, "cause": WORKER_KILLED, "detail": f"out of memory: {exc}"}
    except Exception as exc:  # a reader bug, a full disk, an input nobody foresaw: record it, carry on
        return {
            "status": EXCLUDED,
            "cause": _write_failure_cause(exc),
            "detail": f"{type(exc).__name__}: {_short_detail(exc, root)}",
        }


def write_worker(
    source: SourceCase,
    settings: ConversionSettings,
    case_id: str,
    part: str,
    stage_dir: str,
    box_json: dict,
    centre_index: tuple[int, int, int],
    dataset_folder: str,
) -> dict:
    """Pass 2 for one case: crop the staged case (or prepare it again) and write its files."""
    import numpy as np
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.dose_conversion import write_case_dose
    from nnunet_recur.dataset_conversion.prepare import crop_case, load_staged

    try:
        case = load_staged(Path(stage_dir))
        if case is None:
            case = _load(source, settings)
        box = CropBox.from_json(box_json)
        images = crop_case(case, box, tuple(centre_index))
        DatasetWriter(Path(dataset_folder)).write_case(case_id, part, images)
        write_case_dose(
            source, settings, case, Path(stage_dir), images["ct"], Path(dataset_folder), case_id, part
        )
        shutil.rmtree(stage_dir, ignore_errors=True)
        before = int(np.count_nonzero(sitk.GetArrayViewFromImage(case.label)))
        after = int(np.count_nonzero(sitk.GetArrayViewFromImage(images["label"])))
        notes = []
        if after < before:
            notes.append(f"{before - after} of {before} label voxels fall outside the crop box")
        return {"ok": True, "notes": notes}
    except Exception as exc:
        return {"ok": False, "cause": _write_failure_cause(exc), "error": f"{type(exc).__name__}: {exc}"}


# -- the driver ------------------------------------------------------------------------------------------
def _default_report_dir(folder_name: str) -> Path:
    return Path("recur_reports") / folder_name


def _load_state(path: Path, settings_key: str) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if state.get("version") != STATE_VERSION or state.get("prepare_settings") != settings_key:
        return {}
    return dict(state.get("patients", {}))


def _run_parallel(
    jobs: list[tuple[str, Callable, tuple]],
    workers: int,
    description: str,
    on_result: Callable[[str, dict], None],
    show_progress: bool,
) -> None:
    """Run `jobs` (key, function, args), in-process when workers <= 1, with a rich progress bar; a dead
    worker costs only its own patient (see workers.py)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nnunet_recur.dataset_conversion.workers import run_jobs

    if not jobs:
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=len(jobs))
        if workers <= 1:
            for key, function, args in jobs:
                on_result(key, function(*args))
                progress.advance(task)
            return

        def failure(cause: str, message: str) -> dict:
            return {"status": EXCLUDED, "cause": cause, "detail": message, "ok": False, "error": message}

        run_jobs(
            jobs,
            workers,
            on_result,
            killed_result=lambda key: failure(
                WORKER_KILLED, "the worker process died (killed, or out of memory) while converting it"
            ),
            failed_result=lambda key, exc: failure(UNREADABLE, f"worker failed: {type(exc).__name__}: {exc}"),
            initializer=_init_worker,
            advance=lambda: progress.advance(task),
        )


def convert_cohort(
    sources: Sequence[SourceCase],
    settings: ConversionSettings,
    *,
    source_root: str | None = None,
    show_progress: bool = True,
    hidden: Sequence[str] = (),
    strays: Sequence[SkippedEntry] = (),
) -> ConversionSummary:
    """Convert `sources` into $nnUNet_raw/DatasetXXX_Name (see the module docstring).

    `hidden`: dot-prefixed folder names of the source that are listed in the report as skipped;
    `strays`: the other entries of the source that are not patients (archives, plain files), each listed
    with its reason."""
    if settings.crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {settings.crop!r}")
    if settings.split is not None and settings.split not in SPLIT_MODES:
        raise ValueError(f"split must be one of {SPLIT_MODES}, got {settings.split!r}")
    if settings.inhouse is not None:
        settings.inhouse.validate()
    if not sources:
        raise DatasetLocationError(f"{source_root}: no patients found")
    names = [s.patient for s in sources]
    if len(set(names)) != len(names):
        raise DatasetLocationError(f"{source_root}: duplicate patient names")

    folder_name = dataset_folder_name(settings.dataset_id, settings.name)
    root = raw_root(settings.raw_dir)
    check_no_id_clash(root, settings.dataset_id, folder_name)
    dataset_folder = root / folder_name
    report_dir = Path(settings.report_dir) if settings.report_dir else _default_report_dir(folder_name)
    if _inside(report_dir, root):
        raise DatasetLocationError(
            f"--report-dir {report_dir} lies inside nnUNet_raw: the report names patients, "
            "the dataset must not"
        )
    preprocessed = settings.preprocessed_dir or os.environ.get("nnUNet_preprocessed")
    if preprocessed and _inside(report_dir, Path(preprocessed)):
        raise DatasetLocationError(
            f"--report-dir {report_dir} lies inside nnUNet_preprocessed: the report names patients, "
            "the training folders must not"
        )
    if settings.id_map:
        for label, location in (("nnUNet_raw", root), ("nnUNet_preprocessed", preprocessed)):
            if location and _inside(Path(settings.id_map), Path(location)):
                raise DatasetLocationError(
                    f"--id-map {settings.id_map} lies inside {label}: the identifier map would travel "
                    "with the pseudonymised dataset; write it elsewhere"
                )
    with dataset_lock(root, settings.dataset_id):
        return _convert_locked(
            sources,
            settings,
            source_root,
            show_progress,
            hidden,
            strays,
            root,
            folder_name,
            dataset_folder,
            report_dir,
        )


class _StateFile:
    """REPORT_DIR/conversion_state.json: saved after pass 1 and after every written case, so an
    interrupted run resumes where it stopped."""

    def __init__(self, path: Path, settings_key: str):
        self.path = path
        self.settings_key = settings_key

    def previous(self) -> dict[str, dict]:
        return _load_state(self.path, self.settings_key)

    def save(self, records: dict[str, CaseRecord]) -> None:
        write_json_atomic(
            self.path,
            {
                "version": STATE_VERSION,
                "prepare_settings": self.settings_key,
                "patients": {p: records[p].to_json() for p in sorted(records)},
            },
        )


def _convert_locked(
    sources: Sequence[SourceCase],
    settings: ConversionSettings,
    source_root: str | None,
    show_progress: bool,
    hidden: Sequence[str],
    strays: Sequence[SkippedEntry],
    root: Path,
    folder_name: str,
    dataset_folder: Path,
    report_dir: Path,
) -> ConversionSummary:
    """convert_cohort's work, run while holding the dataset lock: check, split and box, write, report."""
    report_dir.mkdir(parents=True, exist_ok=True)
    dataset_folder.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(dataset_folder, CASE_PREFIX)
    stage_root = writer.tmp_dir / "staging"
    settings_key = prepare_settings_key(settings)
    state = _StateFile(report_dir / "conversion_state.json", settings_key)

    records = check_patients(sources, settings, source_root, show_progress, stage_root, state)
    split, box = choose_split_and_box(records, settings, writer)
    run = CohortRun(sources, settings, records, writer, split, box)
    written, skipped = write_cases(run, stage_root, state, show_progress)
    remove_stale_cases(records, writer)
    summary = write_reports(run, folder_name, report_dir, hidden, strays)
    state.save(records)
    summary.written, summary.skipped = written, skipped
    return summary


def check_patients(
    sources: Sequence[SourceCase],
    settings: ConversionSettings,
    source_root: str | None,
    show_progress: bool,
    stage_root: Path,
    state: _StateFile,
) -> dict[str, CaseRecord]:
    """Pass 1: load, check, measure and stage every patient whose files or settings changed since the
    last run; the others keep their remembered record."""
    previous = state.previous()
    ids = case_ids([s.patient for s in sources])
    records: dict[str, CaseRecord] = {}
    jobs = []
    for source in sources:
        record = CaseRecord(source.patient, ids[source.patient], fingerprint(source))
        old = previous.get(source.patient)
        # unexpected failures, a full disk, a killed worker may be transient: retried on every run
        reusable = old and old.get("cause") not in (UNREADABLE, *NON_DATA_CAUSES)
        if reusable and old.get("fingerprint") == record.fingerprint and old.get("case") == record.case:
            record = CaseRecord.from_json(source.patient, old)
        else:
            jobs.append(
                (
                    source.patient,
                    prepare_worker,
                    (source, settings, str(stage_root / record.case), source_root),
                )
            )
        records[source.patient] = record

    def on_prepared(patient: str, result: dict) -> None:
        record = records[patient]
        record.status = result["status"]
        record.cause = result.get("cause", "")
        record.detail = result.get("detail", "")
        record.measurement = (
            CaseMeasurement.from_json(result["measurement"]) if "measurement" in result else None
        )
        record.notes = list(result.get("notes", []))
        record.series = dict(result.get("series", {}))
        record.output_key = ""
        record.part = ""

    _run_parallel(jobs, settings.workers, "checking patients", on_prepared, show_progress)
    state.save(records)
    return records


def _included(records: dict[str, CaseRecord]) -> list[CaseRecord]:
    return sorted((r for r in records.values() if r.status == CONVERTED), key=lambda r: r.case)


def _part(case: str, split: Split | None) -> str:
    return "Ts" if split and case in split.test else "Tr"


def choose_split_and_box(
    records: dict[str, CaseRecord], settings: ConversionSettings, writer: DatasetWriter
) -> tuple[Split | None, CropBox]:
    """Split the converted patients, then derive the crop box from train+val."""
    included = _included(records)
    case_to_record = {r.case: r for r in included}
    split = (
        make_split(list(case_to_record), settings.split, settings.seed)
        if settings.split and included
        else None
    )
    if split is not None and split.mode == "cv5" and len(split.train_val) < 5:
        writer.cleanup_tmp()
        raise ValueError(
            f"--split cv5 needs at least 5 train+val patients, got {len(split.train_val)}; use --split paper"
        )
    train_val = list(split.train_val) if split else sorted(case_to_record)
    box = (
        _crop_box(settings.crop, [case_to_record[c].measurement for c in train_val]) if included else no_box()
    )
    return split, box


def _mask_names(settings: ConversionSettings) -> tuple[str, ...]:
    return MASK_NAMES if settings.with_masks and settings.kind == "inhouse" else ("gtv",)


@dataclass
class CohortRun:
    """What the write and report steps of one conversion share: the patients and their records, the
    settings, the dataset writer, and the split and crop box chosen after pass 1."""

    sources: Sequence[SourceCase]
    settings: ConversionSettings
    records: dict[str, CaseRecord]
    writer: DatasetWriter
    split: Split | None
    box: CropBox


def write_cases(run: CohortRun, stage_root: Path, state: _StateFile, show_progress: bool) -> tuple[int, int]:
    """Pass 2: crop and write every converted case whose output key changed (a case already written with
    the same inputs, box and part is skipped); a write failure excludes that patient only.
    Returns (written, skipped)."""
    records, settings, split, writer = run.records, run.settings, run.split, run.writer
    box_json = run.box.to_json()
    writer.ensure_folders(with_test=bool(split and split.test), with_masks=settings.with_masks)
    mask_names = _mask_names(settings)
    settings_key = state.settings_key
    write_jobs = []
    pending_keys: dict[str, str] = {}
    skipped = 0
    by_patient = {s.patient: s for s in run.sources}
    for record in _included(records):
        part = _part(record.case, split)
        key = _sha1([settings_key, record.fingerprint, box_json, part, record.case, STATE_VERSION])
        if record.output_key == key and writer.case_verified(record.case, part, mask_names):
            skipped += 1
            continue
        record.output_key = ""
        record.part = part
        writer.remove_case(record.case)  # old files of this case, wherever they are
        write_jobs.append(
            (
                record.patient,
                write_worker,
                (
                    by_patient[record.patient],
                    settings,
                    record.case,
                    part,
                    str(stage_root / record.case),
                    box_json,
                    record.measurement.centre_index,
                    str(writer.folder),
                ),
            )
        )
        pending_keys[record.patient] = key

    failures: dict[str, tuple[str, str]] = {}

    def on_written(patient: str, result: dict) -> None:
        record = records[patient]
        if result["ok"]:
            record.notes = [n for n in record.notes if "outside the crop box" not in n] + result["notes"]
            record.output_key = pending_keys[patient]
            state.save(records)
        else:
            failures[patient] = (result.get("cause") or UNREADABLE, result["error"])
            record.output_key = ""

    _run_parallel(write_jobs, settings.workers, "writing cases", on_written, show_progress)
    for patient, (cause, error) in failures.items():  # a write failure excludes the patient, the rest goes on
        record = records[patient]
        record.status, record.cause, record.detail = EXCLUDED, cause, f"writing failed: {error}"
        writer.remove_case(record.case)
    return len(write_jobs) - len(failures), skipped


def remove_stale_cases(records: dict[str, CaseRecord], writer: DatasetWriter) -> None:
    """Everything not in its right place any more (excluded since, moved between Tr and Ts) goes."""
    final = {r.case for r in records.values() if r.status == CONVERTED}
    for case in writer.cases_on_disk():
        if case not in final:
            writer.remove_case(case)
    writer.cleanup_tmp()


def write_reports(
    run: CohortRun,
    folder_name: str,
    report_dir: Path,
    hidden: Sequence[str],
    strays: Sequence[SkippedEntry] = (),
) -> ConversionSummary:
    """dataset.json, splits_final.json, and the QC report (exclusions.csv, cases.csv, summary.json, the
    optional id map). `written`/`skipped` of the returned summary are filled in by the caller."""
    records, sources, settings, split, box = run.records, run.sources, run.settings, run.split, run.box
    writer = run.writer
    dataset_folder = writer.folder
    box_json = box.to_json()
    converted = {r.patient: r.case for r in records.values() if r.status == CONVERTED}
    train_cases = sorted(c for c in converted.values() if _part(c, split) == "Tr")
    labels = (
        relapse_dataset_labels()
        if settings.kind == "inhouse"
        else hecktor_dataset_labels(settings.labels == "gtvp+gtvn")
    )
    content = base_dataset_json(settings.name, settings.description, labels, len(train_cases))
    content["recur_crop"] = box_json
    content["recur_conversion"] = _conversion_record(settings, split, _mask_names(settings))
    writer.write_dataset_json(content)

    splits_path, splits_note = None, ""
    if split is not None:
        splits_path, splits_note = _write_splits(split, dataset_folder, folder_name, settings, report_dir)

    exclusions = [Exclusion(r.patient, r.cause, r.detail) for r in records.values() if r.status == EXCLUDED]
    lookalikes = lookalike_groups(records)
    escaped = {name for group in lookalikes for name in group}
    warnings = [lookalike_warning(group) for group in lookalikes]
    write_text_atomic(
        report_dir / "exclusions.csv",
        exclusions_csv([_escaped_exclusion(e, escaped) for e in exclusions]),
    )
    write_text_atomic(report_dir / "cases.csv", _cases_csv(records.values(), split, hidden, strays, escaped))
    if settings.id_map:
        write_text_atomic(Path(settings.id_map), _id_map_csv(converted))
    line = summary_line(len(sources), len(converted), [e.cause for e in exclusions])
    if hidden:
        line += f"; {len(hidden)} hidden (dot-prefixed) folder(s) skipped: {', '.join(sorted(hidden))}"
    if strays:
        listing = ", ".join(shown_name(e.name) for e in strays)
        line += f"; {len(strays)} other entr{'y' if len(strays) == 1 else 'ies'} skipped: {listing}"
        if any("unpack it first" in e.reason for e in strays):
            line += " (an archive: unpack it first)"
    if warnings:
        line += f"; WARNING: {len(warnings)} group(s) of look-alike patient names (see summary.json)"
    write_json_atomic(
        report_dir / "summary.json",
        {
            "dataset": folder_name,
            "summary": line,
            "patients": len(sources),
            "converted": len(converted),
            "excluded": {e.patient: e.cause for e in sorted(exclusions, key=lambda e: e.patient)},
            "split": split.to_json() if split else None,
            "crop": box_json,
            "splits_final": str(splits_path) if splits_path else None,
            "skipped_hidden_folders": sorted(hidden),
            "skipped_entries": {e.name: e.reason for e in strays},
            "warnings": warnings,
        },
    )
    return ConversionSummary(
        dataset_folder=dataset_folder,
        report_dir=report_dir,
        n_patients=len(sources),
        converted=converted,
        exclusions=sorted(exclusions, key=lambda e: e.patient),
        split=split,
        box=box,
        splits_path=splits_path,
        splits_note=splits_note,
        written=0,
        skipped=0,
        line=line,
        hidden=sorted(hidden),
        strays=list(strays),
        warnings=warnings,
    )


def _escaped_exclusion(exclusion: Exclusion, escaped: set[str]) -> Exclusion:
    if exclusion.patient not in escaped:
        return exclusion
    return Exclusion(ascii(exclusion.patient), exclusion.cause, exclusion.detail)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _crop_box(mode: str, measurements: list[CaseMeasurement | None]) -> CropBox:
    if mode == "none":
        return no_box()
    if mode == "fixed":
        return fixed_box()
    if mode == "fixed-mm":
        return fixed_mm_box()
    usable = [m for m in measurements if m is not None]
    return derive_auto_box([m.extent_mm for m in usable], [m.spacing_mm for m in usable])


def _conversion_record(
    settings: ConversionSettings, split: Split | None, mask_names: tuple[str, ...]
) -> dict:
    """What a user (or `recur` at inference) needs to prepare a new patient like the training data."""
    record = {
        "converter": "nnunet_recur.dataset_conversion",
        "format_version": STATE_VERSION,
        "source": settings.kind,
        "units": {"CT": "HU", "PET": "SUVbw"},
        "steps": [
            "CT and PET cut to their common axial range (CT slices outside the PET are removed)",
            "PET resampled onto the CT grid (SimpleITK linear; labels nearest neighbour)",
            "crop box (recur_crop) centred on the GTV centre of mass; pad CT -1024 HU, PET 0 SUV, labels 0",
        ],
        "masks": {
            name: f"masks{{Tr,Ts}}/<case>_{name}.nii.gz (uint8, same grid as the images)"
            for name in mask_names
        },
    }
    if settings.kind == "hecktor":
        record["label_set"] = settings.labels
    if split is not None:
        record["split"] = split.to_json()
    return record


def _write_splits(
    split: Split, dataset_folder: Path, folder_name: str, settings: ConversionSettings, report_dir: Path
) -> tuple[Path, str]:
    """splits_final.json into nnUNet_preprocessed/DatasetXXX_Name/ (and the raw folder, from where
    nnU-Net's planner copies it when the preprocessed folder does not have one yet)."""
    folds = split.folds()
    write_json_atomic(dataset_folder / "splits_final.json", folds)
    preprocessed = settings.preprocessed_dir or os.environ.get("nnUNet_preprocessed")
    if preprocessed:
        path = Path(preprocessed) / folder_name / "splits_final.json"
        write_json_atomic(path, folds)
        return path, ""
    path = report_dir / "splits_final.json"
    write_json_atomic(path, folds)
    note = (
        f"nnUNet_preprocessed is not set: the split was written to {path} and to {dataset_folder.name}/"
        "splits_final.json (nnU-Net's planner copies the latter into nnUNet_preprocessed)"
    )
    return path, note


def _cases_csv(
    records,
    split: Split | None,
    hidden: Sequence[str] = (),
    strays: Sequence[SkippedEntry] = (),
    escaped: set[str] = frozenset(),
) -> str:
    """One row per patient (and per skipped entry); cells escaped against formula injection; look-alike
    names (`escaped`) shown as `ascii()` so that their rows can be told apart."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "case", "status", "role", "cause", "ct_series", "pet_series", "notes"])
    rows = []
    for record in records:
        role = ""
        if record.status == CONVERTED:
            role = split.role(record.case) if split else "train"
        rows.append(
            [
                ascii(record.patient) if record.patient in escaped else record.patient,
                record.case,
                record.status,
                role,
                record.cause,
                record.series.get("ct", ""),
                record.series.get("pet", ""),
                "; ".join(record.notes),
            ]
        )
    for name in hidden:
        rows.append([name, "", SKIPPED, "", "", "", "", HIDDEN_FOLDER_REASON])
    for entry in strays:
        rows.append([shown_name(entry.name), "", SKIPPED, "", "", "", "", entry.reason])
    for row in sorted(rows, key=lambda r: r[0]):
        writer.writerow(safe_csv_row(row))
    return buffer.getvalue()


def _id_map_csv(converted: dict[str, str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patient", "case"])
    for patient in sorted(converted):
        writer.writerow(safe_csv_row([patient, converted[patient]]))
    return buffer.getvalue()


# -- public entry points ---------------------------------------------------------------------------------
def inhouse_sources(src: str | Path) -> list[SourceCase]:
    """One SourceCase per patient folder of SRC (hidden folders are not patients: see `hidden_folders`)."""
    src = Path(src)
    if not src.is_dir():
        raise DatasetLocationError(f"{src}: not a folder")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [SourceCase(patient=p.name, kind="inhouse", folder=str(p)) for p in folders]


def hidden_folders(src: str | Path) -> list[str]:
    """Dot-prefixed folders of SRC (`.PAT_x`): not converted, but listed in the report as skipped so that
    no patient disappears without a word."""
    return [e.name for e in skipped_entries(src) if e.reason == HIDDEN_FOLDER_REASON]


def hecktor_sources(src: str | Path) -> list[SourceCase]:
    from nnunet_recur.dataset_conversion.hecktor import find_hecktor_cases

    return [SourceCase(patient=c.name, kind="hecktor", hecktor=c) for c in find_hecktor_cases(src)]


def convert_inhouse(
    src: str | Path,
    dataset_id: int,
    name: str = "RecurOPSCC",
    *,
    split: str = "paper",
    seed: int = DEFAULT_SEED,
    crop: str = "auto",
    roi_gtv: str | None = None,
    roi_relapse: str | None = None,
    roi_brain: str | None = None,
    report_dir: str | Path | None = None,
    id_map: str | Path | None = None,
    workers: int = 1,
    raw_dir: str | Path | None = None,
    preprocessed_dir: str | Path | None = None,
    show_progress: bool = True,
    pet_series: str | None = None,
    ct_series: str | None = None,
    rx: tuple[float, ...] | None = None,
    dose_plan: str | None = None,
    require_dose: bool = False,
    label_threshold: float = DEFAULT_LABEL_THRESHOLD,
) -> ConversionSummary:
    """Convert an in-house cohort (one folder per patient in SRC, DICOM or NIfTI) into a relapse dataset
    (with its planned dose beside it, docs/conversion.md "Planned dose")."""
    defaults = InhouseOptions()
    options = InhouseOptions(
        roi_gtv=roi_gtv or defaults.roi_gtv,
        roi_relapse=roi_relapse or defaults.roi_relapse,
        roi_brain=roi_brain or defaults.roi_brain,
        pet_series=pet_series,
        ct_series=ct_series,
        rx=tuple(rx) if rx else None,
        dose_plan=dose_plan,
        require_dose=require_dose,
        label_threshold=label_threshold,
    )
    # Spelled out here and in convert_hecktor below, alike in shape only: the two kinds differ in split, seed,
    # labels, in-house options and description, and each public entry point shows its whole settings.
    settings = ConversionSettings(
        kind="inhouse",
        dataset_id=dataset_id,
        name=name,
        raw_dir=str(raw_dir) if raw_dir else None,
        preprocessed_dir=str(preprocessed_dir) if preprocessed_dir else None,
        crop=crop,
        split=split,
        seed=seed,
        report_dir=str(report_dir) if report_dir else None,
        id_map=str(id_map) if id_map else None,
        workers=workers,
        inhouse=options,
        with_masks=True,
        description="Relapse after radiotherapy of head-and-neck cancer from pre-treatment FDG-PET/CT "
        "(nnunet-recur; CT in HU, PET in SUVbw)",
    )
    return convert_cohort(
        inhouse_sources(src),
        settings,
        source_root=str(src),
        show_progress=show_progress,
        hidden=hidden_folders(src),
        strays=[e for e in skipped_entries(src) if e.reason != HIDDEN_FOLDER_REASON],
    )


def convert_hecktor(
    src: str | Path,
    dataset_id: int,
    name: str = "HECKTOR2022",
    *,
    labels: str = "gtvp",
    crop: str = "fixed-mm",
    report_dir: str | Path | None = None,
    id_map: str | Path | None = None,
    workers: int = 1,
    raw_dir: str | Path | None = None,
    show_progress: bool = True,
) -> ConversionSummary:
    """Convert a HECKTOR 2022 release folder into a GTVp (or GTVp + GTVn) dataset for pre-training."""
    from nnunet_recur.dataset_conversion.hecktor import LABEL_SETS

    if labels not in LABEL_SETS:
        raise ValueError(f"labels must be one of {LABEL_SETS}, got {labels!r}")
    # Alike in shape to convert_inhouse's settings above, on purpose (see the note there).
    settings = ConversionSettings(
        kind="hecktor",
        dataset_id=dataset_id,
        name=name,
        raw_dir=str(raw_dir) if raw_dir else None,
        crop=crop,
        split=None,
        report_dir=str(report_dir) if report_dir else None,
        id_map=str(id_map) if id_map else None,
        workers=workers,
        labels=labels,
        with_masks=True,
        description="HECKTOR 2022 primary (and nodal) GTV, for pre-training (nnunet-recur; CT HU, PET SUV)",
    )
    return convert_cohort(hecktor_sources(src), settings, source_root=str(src), show_progress=show_progress)
