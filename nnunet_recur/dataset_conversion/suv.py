"""PET -> SUVbw (body-weight standardised uptake value).

SUVbw = activity [Bq/ml] x weight [g] / decayed dose [Bq], decayed dose = total dose x
2^(-(t_scan - t_injection) / half-life). The evaluation's SUVmax baseline needs real SUV, and vendors
store PET in different units, so the factor is derived from the header the way the QIBA vendor-neutral
pseudo-code (and its implementations: Slicer PETDICOMExtension, cornerstonejs calculate-suv) does:

- Units BQML + DecayCorrection START: decay from injection to the scan time. The scan time is
  SeriesDate/SeriesTime (not each slice's AcquisitionTime: multi-bed and dynamic series differ per
  slice). Only when the series time lies *after* the earliest AcquisitionDate/Time of the series
  (the series was re-created after the scan, e.g. a re-reconstruction) is the earliest acquisition
  time used instead, as the QIBA pseudo-code prescribes.
- Units BQML + DecayCorrection ADMIN: already decay-corrected to the injection: no decay factor.
- Units GML: already SUVbw (factor 1).
- Units CNTS: Philips private SUV scale factor (7053,1000); failing that, the Philips activity
  concentration scale factor (7053,1009) turns counts into Bq/ml and BQML rules follow.
- Anything else, or a missing tag: ConversionError("suv_not_computable") naming the tag.
A negative or > 24 h uptake time (inconsistent date shifting by de-identification) is refused
rather than turned into a wrong SUV.

Preconditions that calculate-suv and the QIBA pseudo-code enforce, checked before any voxel is read
(`check_suv_preconditions`):
- CorrectedImage (0028,0051) contains ATTN and DECY (a non-attenuation-corrected PET has no SUV);
- the series-level SUV tags (Units, DecayCorrection, CorrectedImage, PatientWeight, SeriesDate/Time,
  the radiopharmaceutical dose, half-life and start time) are the same in every instance;
- PatientWeight within 20-250 kg, RescaleSlope finite, positive and at most 1e6 (suv_implausible);
- when the series time lies after the acquisition, GE's private post-injection date-time
  (0009,100D, creator GEMS_PETD_01) is the scan time when present (QIBA), else the earliest acquisition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydicom.dataset import Dataset

from nnunet_recur.dataset_conversion.errors import (
    PET_NOT_CORRECTED,
    SUV_IMPLAUSIBLE,
    SUV_NOT_COMPUTABLE,
    ConversionError,
)

MAX_UPTAKE_SECONDS = 24 * 3600
PATIENT_WEIGHT_KG_RANGE = (20.0, 250.0)  # an adult head-and-neck patient; 700 kg is a typo, not a weight
MAX_RESCALE_SLOPE = 1e6  # vendor PET slopes are ~1e-3 .. 1e2; 1e38 is damage
MAX_PLAUSIBLE_SUV = 1e4  # FDG SUVmax stays below a few hundred even in the bladder
# The floor: SUVbw is activity per gram over injected activity per gram of body, so over the whole body
# its mean is 1 by construction (less what was excreted), and any FDG PET of the head and neck holds
# voxels well above 1 (brain cortex SUV 5-15, an FDG-avid GTV 3-25). A whole-volume SUVmax below 1 means
# the scale is wrong (a vendor SUV factor 1000x too small gave SUVmax 0.0087 and an empty brain mask).
MIN_PLAUSIBLE_SUVMAX = 1.0
# DecayFactor (0054,1321) says by how much a slice was decay-corrected. ADMIN (corrected to the injection)
# after an FDG uptake of >= 20 min means a factor >= 2^(20/109.8) = 1.13; START (corrected to the scan
# start) means at most the within-frame correction, ~1.01 for a 3-min frame, 1.05 for 10 min.
ADMIN_MIN_DECAY_FACTOR = 1.01
START_MAX_DECAY_FACTOR = 1.1
REQUIRED_CORRECTIONS = ("ATTN", "DECY")
GE_PRIVATE_CREATOR = "GEMS_PETD_01"
GE_POST_INJECTION_ELEMENT = 0x0D  # (0009,xx0D) post-injection scan date-time
PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_SCALE_ELEMENT = 0x00  # (7053,xx00) SUV scale factor
PHILIPS_ACTIVITY_SCALE_ELEMENT = 0x09  # (7053,xx09) activity concentration scale factor


@dataclass(frozen=True)
class SuvHeader:
    """The SUV-relevant header fields of one PET series, vendor-neutral and already parsed.

    Built from pydicom datasets (`suv_header_from_datasets`) or from calculate-suv style JSON dumps
    (`suv_header_from_json`), so one formula serves both.
    """

    units: str | None
    decay_correction: str | None
    patient_weight_kg: float | None
    total_dose_bq: float | None
    half_life_s: float | None
    injection_time: datetime | None
    series_time: datetime | None
    earliest_acquisition_time: datetime | None = None
    philips_suv_scale: float | None = None
    philips_activity_scale: float | None = None
    source: str | None = None  # file or dump the values came from, for error messages
    corrected_image: tuple[str, ...] | None = None  # CorrectedImage (0028,0051); None: not given
    ge_post_injection_time: datetime | None = None  # GE private (0009,100D)


# --------------------------------------------------------------------------------------------------
# DICOM DA / TM / DT parsing


def _parse_tm(value: str) -> tuple[int, int, int, int]:
    """DICOM TM 'HHMMSS.FFFFFF' (also tolerates the old 'HH:MM:SS' form) -> (h, m, s, microseconds)."""
    text = str(value).strip().replace(":", "")
    if not re.fullmatch(r"\d{2,6}(\.\d{0,6})?", text):
        raise ValueError(f"not a DICOM time: {value!r}")
    whole, _, frac = text.partition(".")
    whole = whole.ljust(6, "0")
    micro = int(frac.ljust(6, "0")[:6]) if frac else 0
    return int(whole[:2]), int(whole[2:4]), int(whole[4:6]), micro


def _parse_da(value: str) -> tuple[int, int, int]:
    text = str(value).strip().replace(".", "").replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise ValueError(f"not a DICOM date: {value!r}")
    return int(text[:4]), int(text[4:6]), int(text[6:8])


def combine_date_time(date: str | None, time: str | None) -> datetime | None:
    """DA + TM -> naive datetime (None when either is absent)."""
    if not date or not time or not str(date).strip() or not str(time).strip():
        return None
    y, mo, d = _parse_da(date)
    h, mi, s, us = _parse_tm(time)
    # 24:00:00 or leap second 60 exists in the wild: let timedelta carry them.
    return datetime(y, mo, d) + timedelta(hours=h, minutes=mi, seconds=s, microseconds=us)


def parse_dt(value: str | None) -> datetime | None:
    """DICOM DT 'YYYYMMDDHHMMSS.FFFFFF&ZZXX' -> naive datetime (offset ignored: both times share it)."""
    if value is None or not str(value).strip():
        return None
    text = re.split(r"[+-]", str(value).strip(), maxsplit=1)[0]
    if len(text) < 8:
        raise ValueError(f"not a DICOM date-time: {value!r}")
    return combine_date_time(text[:8], text[8:] or "000000")


# --------------------------------------------------------------------------------------------------
# Header extraction


def _float_or_none(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore").strip("\x00 ")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        if isinstance(value, Sequence) and not isinstance(value, str):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _philips_private(ds: Dataset, element: int) -> float | None:
    """A value of the Philips PET private group (7053,xxEE), with or without its private creator."""
    try:
        block = ds.private_block(0x7053, PHILIPS_PRIVATE_CREATOR)
        if element in block:
            return _float_or_none(block[element].value)
    except (KeyError, ValueError):
        pass
    tag = (0x7053, 0x1000 | element)  # the usual block 0x10
    if tag in ds:
        return _float_or_none(ds[tag].value)
    return None


def _ge_post_injection(ds: Dataset) -> datetime | None:
    """GE's private post-injection scan date-time (0009,xx0D of 'GEMS_PETD_01'), or None."""
    value = None
    try:
        block = ds.private_block(0x0009, GE_PRIVATE_CREATOR)
        if GE_POST_INJECTION_ELEMENT in block:
            value = block[GE_POST_INJECTION_ELEMENT].value
    except (KeyError, ValueError):
        pass
    if value is None and (0x0009, 0x100D) in ds:
        value = ds[(0x0009, 0x100D)].value
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore")
    try:
        return parse_dt(str(value).strip("\x00 ")) if value else None
    except ValueError:
        return None


def _corrections(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split("\\")
    return tuple(str(v).strip().upper() for v in value if str(v).strip())


def _tm_or_dt(date: str | None, time: str | None, where: str) -> datetime | None:
    try:
        return combine_date_time(date, time)
    except ValueError as exc:
        raise ConversionError(SUV_NOT_COMPUTABLE, f"cannot parse {where}: {exc}") from exc


def suv_header_from_datasets(datasets: Dataset | Iterable[Dataset], source: str | None = None) -> SuvHeader:
    """SuvHeader of a PET series from its (header-only) datasets; the first one supplies series tags."""
    if isinstance(datasets, Dataset):
        datasets = [datasets]
    datasets = list(datasets)
    ds = datasets[0]
    source = source or (str(ds.filename) if getattr(ds, "filename", None) else None)

    dose = half_life = None
    injection = None
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if seq:
        item = seq[0]
        dose = _float_or_none(item.get("RadionuclideTotalDose"))
        half_life = _float_or_none(item.get("RadionuclideHalfLife"))
        try:
            injection = parse_dt(item.get("RadiopharmaceuticalStartDateTime"))
        except ValueError as exc:
            raise ConversionError(
                SUV_NOT_COMPUTABLE, f"RadiopharmaceuticalStartDateTime: {exc}", source
            ) from exc
        if injection is None:
            injection = _tm_or_dt(
                ds.get("SeriesDate"),
                item.get("RadiopharmaceuticalStartTime"),
                "SeriesDate + RadiopharmaceuticalStartTime",
            )

    acquisition_times = []
    for d in datasets:
        try:
            t = combine_date_time(d.get("AcquisitionDate") or d.get("SeriesDate"), d.get("AcquisitionTime"))
        except ValueError:
            t = None
        if t is not None:
            acquisition_times.append(t)

    return SuvHeader(
        units=str(ds.get("Units")).strip().upper() if ds.get("Units") else None,
        decay_correction=str(ds.get("DecayCorrection")).strip().upper()
        if ds.get("DecayCorrection")
        else None,
        patient_weight_kg=_float_or_none(ds.get("PatientWeight")),
        total_dose_bq=dose,
        half_life_s=half_life,
        injection_time=injection,
        series_time=_tm_or_dt(ds.get("SeriesDate"), ds.get("SeriesTime"), "SeriesDate/SeriesTime"),
        earliest_acquisition_time=min(acquisition_times) if acquisition_times else None,
        philips_suv_scale=_philips_private(ds, PHILIPS_SUV_SCALE_ELEMENT),
        philips_activity_scale=_philips_private(ds, PHILIPS_ACTIVITY_SCALE_ELEMENT),
        source=source,
        corrected_image=_corrections(ds.get("CorrectedImage")) if "CorrectedImage" in ds else None,
        ge_post_injection_time=_ge_post_injection(ds),
    )


def suv_header_from_json(instances: Sequence[Mapping] | Mapping, source: str | None = None) -> SuvHeader:
    """SuvHeader from a calculate-suv style dump: a list of flat dicts of keyword -> value per instance
    (RadiopharmaceuticalInformationSequence fields flattened; Philips private values under
    "PhilipsPETPrivateGroup": {"SUVScaleFactor", "ActivityConcentrationScaleFactor"})."""
    if isinstance(instances, Mapping):
        instances = [instances]
    first = instances[0]
    injection = parse_dt(first.get("RadiopharmaceuticalStartDateTime"))
    if injection is None:
        injection = combine_date_time(first.get("SeriesDate"), first.get("RadiopharmaceuticalStartTime"))
    acquisitions = [
        combine_date_time(i.get("AcquisitionDate") or i.get("SeriesDate"), i.get("AcquisitionTime"))
        for i in instances
        if i.get("AcquisitionTime")
    ]
    philips = first.get("PhilipsPETPrivateGroup") or {}
    return SuvHeader(
        units=str(first["Units"]).strip().upper() if first.get("Units") else None,
        decay_correction=str(first["DecayCorrection"]).strip().upper()
        if first.get("DecayCorrection")
        else None,
        patient_weight_kg=_float_or_none(first.get("PatientWeight")),
        total_dose_bq=_float_or_none(first.get("RadionuclideTotalDose")),
        half_life_s=_float_or_none(first.get("RadionuclideHalfLife")),
        injection_time=injection,
        series_time=combine_date_time(first.get("SeriesDate"), first.get("SeriesTime")),
        earliest_acquisition_time=min(acquisitions) if acquisitions else None,
        philips_suv_scale=_float_or_none(philips.get("SUVScaleFactor")),
        philips_activity_scale=_float_or_none(philips.get("ActivityConcentrationScaleFactor")),
        source=source,
        corrected_image=_corrections(first.get("CorrectedImage")),
        ge_post_injection_time=parse_dt(first.get("GEPrivatePostInjectionDateTime")),
    )


# --------------------------------------------------------------------------------------------------
# The formula


def _require(value, tag: str, header: SuvHeader, why: str):
    if value is None or (isinstance(value, float) and (not math.isfinite(value) or value <= 0)):
        raise ConversionError(
            SUV_NOT_COMPUTABLE, f"{why}: {tag} is missing or not positive ({value!r})", header.source
        )
    return value


def scan_time(header: SuvHeader) -> datetime:
    """Reference time of the decay correction: SeriesDate/Time, or the earliest acquisition time when
    the series time lies after it (series re-created after the scan; QIBA vendor-neutral rule)."""
    series = header.series_time
    if series is None:
        raise ConversionError(
            SUV_NOT_COMPUTABLE,
            "decay correction START needs SeriesDate (0008,0021) and SeriesTime (0008,0031)",
            header.source,
        )
    if header.earliest_acquisition_time is not None and series > header.earliest_acquisition_time:
        if header.ge_post_injection_time is not None:  # QIBA: GE's private scan date-time first
            return header.ge_post_injection_time
        return header.earliest_acquisition_time
    return series


def uptake_seconds(header: SuvHeader) -> float:
    """Seconds from injection to the scan time; refuses negative or > 24 h values (date shifting)."""
    injection = _require(
        header.injection_time,
        "RadiopharmaceuticalStartDateTime (0018,1078) / RadiopharmaceuticalStartTime (0018,1072)",
        header,
        "SUV needs the injection time",
    )
    t_scan = scan_time(header)
    seconds = (t_scan - injection).total_seconds()
    if seconds < 0 or seconds > MAX_UPTAKE_SECONDS:
        raise ConversionError(
            SUV_NOT_COMPUTABLE,
            f"uptake time {seconds / 3600:+.2f} h between injection ({injection.isoformat()}) and scan "
            f"({t_scan.isoformat()}) is implausible (negative or > 24 h); the dates were probably shifted "
            "inconsistently by de-identification, refusing to compute a wrong SUV",
            header.source,
        )
    return seconds


def _bqml_factor(header: SuvHeader) -> float:
    why = "SUVbw of BQML PET"
    weight = _require(header.patient_weight_kg, "PatientWeight (0010,1030)", header, why)
    low, high = PATIENT_WEIGHT_KG_RANGE
    if not low <= weight <= high:
        raise ConversionError(
            SUV_IMPLAUSIBLE,
            f"PatientWeight (0010,1030) {weight:g} kg is outside the plausible {low:g}-{high:g} kg "
            "(grams or pounds entered as kg?); refusing to compute a wrong SUV",
            header.source,
        )
    dose = _require(
        header.total_dose_bq,
        "RadionuclideTotalDose (0018,1074) in RadiopharmaceuticalInformationSequence (0054,0016)",
        header,
        why,
    )
    correction = header.decay_correction
    if correction == "ADMIN":
        decayed_dose = dose
    elif correction == "START":
        half_life = _require(
            header.half_life_s,
            "RadionuclideHalfLife (0018,1075) in RadiopharmaceuticalInformationSequence (0054,0016)",
            header,
            why,
        )
        decayed_dose = dose * 2.0 ** (-uptake_seconds(header) / half_life)
    else:
        raise ConversionError(
            SUV_NOT_COMPUTABLE,
            f"DecayCorrection (0054,1102) is {correction!r}; only START and ADMIN are supported "
            "(NONE needs per-frame decay correction)",
            header.source,
        )
    return weight * 1000.0 / decayed_dose


def check_corrected(header: SuvHeader, required: bool = False) -> None:
    """CorrectedImage must contain ATTN and DECY (when given, or always when `required`)."""
    corrections = header.corrected_image
    if corrections is None and not required:
        return
    missing = [c for c in REQUIRED_CORRECTIONS if c not in (corrections or ())]
    if missing:
        raise ConversionError(
            PET_NOT_CORRECTED,
            f"CorrectedImage (0028,0051) is {list(corrections or [])}: lacks {' and '.join(missing)}; "
            "a PET without attenuation and decay correction has no SUV",
            header.source,
        )


def suv_factor_from_header(header: SuvHeader) -> float:
    """Multiplier from rescaled stored values (in `Units`) to SUVbw."""
    check_corrected(header)
    units = header.units
    if units == "GML":
        return 1.0
    if units == "BQML":
        return _bqml_factor(header)
    if units == "CNTS":
        if header.philips_suv_scale:
            return float(header.philips_suv_scale)
        if header.philips_activity_scale:
            return float(header.philips_activity_scale) * _bqml_factor(header)
        raise ConversionError(
            SUV_NOT_COMPUTABLE,
            "Units CNTS without the Philips private SUV scale factor (7053,1000) or activity concentration "
            "scale factor (7053,1009) of the 'Philips PET Private Group'",
            header.source,
        )
    if units is None:
        raise ConversionError(SUV_NOT_COMPUTABLE, "Units (0054,1001) is missing", header.source)
    raise ConversionError(
        SUV_NOT_COMPUTABLE,
        f"Units (0054,1001) {units!r} is not supported (BQML, GML, Philips CNTS)",
        header.source,
    )


def suv_factor(ds_or_header) -> float:
    """SUVbw factor (rescaled stored value -> SUV) from a pydicom Dataset, a list of datasets of one
    series, a `DicomSeries` (uses all its headers for the acquisition-time check) or a `SuvHeader`."""
    if isinstance(ds_or_header, SuvHeader):
        return suv_factor_from_header(ds_or_header)
    headers = getattr(ds_or_header, "headers", None)
    if headers is not None:  # DicomSeries
        check_suv_preconditions(ds_or_header)
        return suv_factor_from_header(suv_header_from_datasets(headers, source=str(ds_or_header.files[0])))
    return suv_factor_from_header(suv_header_from_datasets(ds_or_header))


_SERIES_LEVEL_TAGS = (
    "Units",
    "DecayCorrection",
    "CorrectedImage",
    "PatientWeight",
    "SeriesDate",
    "SeriesTime",
)
_RADIOPHARM_TAGS = (
    "RadionuclideTotalDose",
    "RadionuclideHalfLife",
    "RadiopharmaceuticalStartDateTime",
    "RadiopharmaceuticalStartTime",
)


def _series_level_values(ds: Dataset) -> dict[str, str]:
    values = {tag: str(ds.get(tag, "")).strip() for tag in _SERIES_LEVEL_TAGS}
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    item = seq[0] if seq else Dataset()
    values.update({tag: str(item.get(tag, "")).strip() for tag in _RADIOPHARM_TAGS})
    return values


def check_suv_preconditions(series) -> None:
    """The QIBA / calculate-suv preconditions on a PET `DicomSeries` (header only, before any voxel):
    CorrectedImage with ATTN and DECY, series-level SUV tags equal in every instance, RescaleSlope sane."""
    first_path = str(series.files[0])
    header = SuvHeader(
        units=None,
        decay_correction=None,
        patient_weight_kg=None,
        total_dose_bq=None,
        half_life_s=None,
        injection_time=None,
        series_time=None,
        source=first_path,
        corrected_image=_corrections(series.first.get("CorrectedImage")),
    )
    check_corrected(header, required=True)
    reference = _series_level_values(series.first)
    for ds, path in zip(series.headers, series.files, strict=True):
        values = _series_level_values(ds)
        differing = [tag for tag in reference if values[tag] != reference[tag]]
        if differing:
            tag = differing[0]
            raise ConversionError(
                SUV_NOT_COMPUTABLE,
                f"series-level SUV tag {tag} is {values[tag]!r} here but {reference[tag]!r} in "
                f"{series.files[0].name}: the instances of one series disagree",
                str(path),
            )
        slope = _float_or_none(ds.get("RescaleSlope"))
        if slope is not None and not (math.isfinite(slope) and 0 < slope <= MAX_RESCALE_SLOPE):
            raise ConversionError(
                SUV_IMPLAUSIBLE,
                f"RescaleSlope (0028,1053) {slope!r} is not a finite positive number "
                f"up to {MAX_RESCALE_SLOPE:g}",
                str(path),
            )


def check_decay_factor(series) -> None:
    """DecayCorrection against DecayFactor where both exist: ADMIN with a factor of ~1 (no correction to
    the injection happened) or START with a factor far above 1 (corrected to the injection) contradict
    themselves; the first gives an SUV ~30 % low, so it is refused (suv_not_computable)."""
    first = series.first
    correction = str(first.get("DecayCorrection", "")).strip().upper()
    factor = _float_or_none(first.get("DecayFactor"))
    if factor is None or correction not in ("ADMIN", "START"):
        return
    if correction == "ADMIN" and factor < ADMIN_MIN_DECAY_FACTOR:
        why = (
            f"DecayCorrection ADMIN (decay-corrected to the injection) with DecayFactor {factor:g}: a "
            f"correction to the injection after any FDG uptake time is >= {ADMIN_MIN_DECAY_FACTOR:g}"
        )
    elif correction == "START" and factor > START_MAX_DECAY_FACTOR:
        why = (
            f"DecayCorrection START (decay-corrected to the scan start) with DecayFactor {factor:g}: a "
            f"correction within one frame stays below {START_MAX_DECAY_FACTOR:g}; the image looks "
            "decay-corrected to the injection"
        )
    else:
        return
    raise ConversionError(
        SUV_NOT_COMPUTABLE,
        f"{why}; the header contradicts itself and the SUV would be wrong by the decay (~30 %)",
        str(series.files[0]),
    )


def check_suv_floor(peak: float, source: str | None) -> None:
    """suv_implausible when the whole PET's SUVmax is below MIN_PLAUSIBLE_SUVMAX (see its comment)."""
    if peak < MIN_PLAUSIBLE_SUVMAX:
        raise ConversionError(
            SUV_IMPLAUSIBLE,
            f"SUVmax {peak:.4g} of the whole PET is below {MIN_PLAUSIBLE_SUVMAX:g}: no FDG PET of the head "
            "and neck is that low (the body mean of SUVbw is 1); check the vendor SUV factor, Units, "
            "RescaleSlope and the dose",
            source,
        )


def pet_series_to_suv(series):
    """A PET `DicomSeries` as a float32 SimpleITK image in SUVbw (rescale per slice, then the factor).

    The factor is computed before the pixel data are read, so a header problem fails fast.
    """
    import numpy as np
    import SimpleITK as sitk

    from nnunet_recur.dataset_conversion.dicom_series import read_image_series

    if series.modality != "PT":
        raise ConversionError(
            SUV_NOT_COMPUTABLE, f"not a PET series (Modality {series.modality})", str(series.files[0])
        )
    factor = suv_factor(series)
    check_decay_factor(series)
    activity = read_image_series(series)
    suv = sitk.GetArrayViewFromImage(activity).astype(np.float64) * factor
    peak = float(np.max(suv)) if suv.size else 0.0
    if not np.isfinite(peak) or peak > MAX_PLAUSIBLE_SUV:
        raise ConversionError(
            SUV_IMPLAUSIBLE,
            f"SUVmax {peak:.4g} is implausible (limit {MAX_PLAUSIBLE_SUV:g}): check RescaleSlope, Units "
            "and the dose",
            str(series.files[0]),
        )
    check_suv_floor(peak, str(series.files[0]))
    image = sitk.GetImageFromArray(suv.astype(np.float32))
    image.CopyInformation(activity)
    return image
