"""One synthetic patient in memory: grids, CT, PET (SUV), GTVs, relapse, brain/body, PET dose header.

``generate_patient(seed, index, size)`` is a pure function of its arguments (its random stream is
``SeedSequence([seed, index])``), so a patient is the same in every output format, with or without
``--defects``, and whatever the number of cases.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from nnunet_recur.synthetic import lesions as _lesions
from nnunet_recur.synthetic import phantom as _ph
from nnunet_recur.synthetic.geometry import PatientGrids, grids_for
from nnunet_recur.synthetic.plan import SyntheticPlan, make_plan
from nnunet_recur.synthetic.relapse import make_relapse
from nnunet_recur.synthetic.sites import SiteProfile

F18_HALF_LIFE_S = 6586.2


@dataclass(frozen=True)
class PetDose:
    """What a PET header needs for SUVbw (body weight) with DecayCorrection START."""

    weight_kg: float
    dose_bq: int
    study_date: str  # YYYYMMDD
    injection_s: int  # seconds after midnight
    uptake_s: int  # series start - injection
    half_life_s: float = F18_HALF_LIFE_S

    @property
    def series_s(self) -> int:
        return self.injection_s + self.uptake_s

    @property
    def bqml_per_suv(self) -> float:
        """Activity concentration (Bq/ml) of SUVbw 1 at series time."""
        decayed = self.dose_bq * 2.0 ** (-self.uptake_s / self.half_life_s)
        return decayed / (self.weight_kg * 1000.0)


def hhmmss(seconds: int) -> str:
    return f"{seconds // 3600:02d}{(seconds // 60) % 60:02d}{seconds % 60:02d}"


@dataclass
class SyntheticPatient:
    seed: int
    index: int  # 0-based
    size: str
    grids: PatientGrids
    ct: object  # SimpleITK images from here on
    pet: object
    gtvp: object
    gtvn: object
    relapse: object  # 0 background, 1 first component, 2 second component
    brain: object
    body: object
    dose: PetDose
    info: dict = field(default_factory=dict)
    brain_roi: bool = True  # whether the RTSTRUCT carries a Brain ROI
    plan: SyntheticPlan | None = None  # the treatment plan (analytic dose, RT Dose grid)

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def patient_name(self) -> str:
        """What the DICOM header says (identifying-looking on purpose, to test privacy downstream)."""
        return f"Synthetic^Patient{self.number:03d}"

    @property
    def patient_id(self) -> str:
        return f"SYN-{self.seed}-{self.number:03d}"


def _draw_dose(rng: np.random.Generator) -> PetDose:
    day = _dt.date(2009, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 3200)))
    return PetDose(
        weight_kg=round(float(rng.uniform(55, 105)), 1),
        dose_bq=int(round(float(rng.uniform(2.5e8, 4.0e8)), -5)),
        study_date=day.strftime("%Y%m%d"),
        injection_s=int(8 * 3600 + rng.integers(0, 3 * 3600)),
        uptake_s=int(rng.integers(55 * 60, 75 * 60 + 1)),
    )


GTVP_SUVMAX_RANGE = (6.5, 25.0)


def _calibrate_primary(lesion, uptake: np.ndarray, blurred: np.ndarray, phantom, rng) -> float:
    """Scale the GTVp's contrast over soft tissue so its blurred SUVmax equals a drawn target (in place).

    Blurring is linear, so only the lesion's own blurred excess needs recomputing (in a box around it).
    Small tumours would otherwise lose their SUVmax to partial volume.
    """
    target = float(np.exp(rng.uniform(*np.log(GTVP_SUVMAX_RANGE))))
    background = float(np.median(uptake[ndimage.binary_dilation(lesion.mask, iterations=2) & ~lesion.mask]))
    idx = np.nonzero(lesion.mask)
    reach_mm = 3.5 * _ph.PET_FWHM_MM / 2.3548
    pad = tuple(int(np.ceil(reach_mm / phantom.spacing[a])) + 1 for a in (2, 1, 0))
    box = tuple(
        slice(max(0, int(i.min()) - p), min(n, int(i.max()) + p + 1))
        for i, p, n in zip(idx, pad, uptake.shape, strict=True)
    )
    excess = np.zeros(uptake[box].shape, dtype=np.float32)
    excess[lesion.mask[box]] = lesion.uptake - background
    blurred_excess = _ph.blur_pet(excess, phantom)
    in_lesion = lesion.mask[box]
    peak = np.unravel_index(np.argmax(np.where(in_lesion, blurred_excess, -np.inf)), excess.shape)
    scale = 1.0 + (target - float(blurred[box][peak])) / max(float(blurred_excess[peak]), 1e-3)
    scale = max(scale, 0.2)
    lesion.uptake = (background + (lesion.uptake - background) * scale).astype(np.float32)
    uptake[lesion.mask] = lesion.uptake
    blurred[box] += (scale - 1.0) * blurred_excess
    return float(blurred[lesion.mask].max())


def generate_patient(
    seed: int, index: int, size: str = "small", site: SiteProfile | None = None
) -> SyntheticPatient:
    """Render one patient (deterministic in seed, index, size and site).

    `site` (synthetic/sites.py) changes only the scanner: PET FWHM, PET noise, SUV calibration, CT noise
    and kernel; None is the single-site cohort, unchanged."""
    site = site or SiteProfile("single site")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    grids: PatientGrids = grids_for(size, rng)
    anatomy = _ph.draw_anatomy(grids, size, rng)
    labels = _ph.render_tissues(grids.phantom, anatomy)
    lesion_list = _lesions.place_lesions(labels, grids.phantom, anatomy, rng)

    table, brain_suv = _ph.base_uptake_table(rng)
    uptake = table[labels] * _ph.smooth_modulation(grids.phantom, rng)
    brain_like = (labels == _ph.BRAIN) | (labels == _ph.BRAIN_WM)
    uptake[brain_like] = table[labels[brain_like]]  # brain keeps its own level
    for lesion in lesion_list:
        uptake[lesion.mask] = lesion.uptake
    blurred = _ph.blur_pet(uptake, grids.phantom)
    suvmax = _calibrate_primary(lesion_list[0], uptake, blurred, grids.phantom, rng)
    if site.pet_fwhm_mm != _ph.PET_FWHM_MM:  # same true activity (and relapse), another scanner's PSF
        blurred = _ph.blur_pet(uptake, grids.phantom, site.pet_fwhm_mm)
    pet_avid = np.zeros(labels.shape, dtype=bool)
    for lesion in lesion_list:
        pet_avid |= lesion.pet_avid

    ct_rows = grids.ct_slices_in_phantom
    labels_ct = labels[ct_rows]
    gtvp = lesion_list[0].mask[ct_rows]
    gtvn = lesion_list[1].mask[ct_rows] if len(lesion_list) > 1 else np.zeros_like(gtvp)
    relapse, components = make_relapse(
        labels_ct, gtvp | gtvn, pet_avid[ct_rows], uptake[ct_rows], grids.ct, anatomy.z_skull_base, rng
    )
    ct_hu = _ph.make_ct_hu(labels_ct, rng, site.ct_noise_hu, site.ct_kernel_sigma)
    pet_suv = _ph.resample_with_noise(blurred, grids.phantom, grids.pet, rng, site.pet_noise_factor)
    if site.suv_calibration != 1.0:  # the scanner reports activity a few percent off
        pet_suv = (pet_suv * np.float32(site.suv_calibration)).astype(np.float32)
    dose = _draw_dose(rng)
    brain_roi = bool(rng.uniform() < 0.5)

    ct = grids.ct
    vox = ct.voxel_volume_cc
    plan = make_plan(seed, index, ct, gtvp | gtvn, labels_ct != _ph.AIR)
    po_doses = plan.dose_at([c["position_mm"] for c in components]) if components else []
    for record, dose_gy in zip(components, po_doses, strict=True):
        record["dose_gy"] = round(float(dose_gy), 4)  # analytic, not read back from the RT Dose
    info = {
        "synthetic": True,
        "seed": int(seed),
        **({} if site.name == "single site" else {"site": site.as_dict()}),
        "index": int(index),
        "size": size,
        "ct_grid": ct.as_dict(),
        "pet_grid": grids.pet.as_dict(),
        "skull_base_z_mm": round(anatomy.z_skull_base, 3),
        "gtvp_cc": round(float(gtvp.sum()) * vox, 3),
        "gtvn_cc": round(float(gtvn.sum()) * vox, 3),
        "gtv_cc": round(float((gtvp | gtvn).sum()) * vox, 3),
        "pet_gtv_cc": round(float((pet_avid[ct_rows] & (gtvp | gtvn)).sum()) * vox, 3),
        "gtvp_suvmax": round(suvmax, 3),
        "gtvp_hot_core_mm": [round(v, 3) for v in lesion_list[0].hot_core_mm],
        "brain_suv_nominal": round(brain_suv, 3),
        "relapse_cc": round(float((relapse > 0).sum()) * vox, 3),
        "points_of_origin": components,
        "pet_dose": {
            "weight_kg": dose.weight_kg,
            "dose_bq": dose.dose_bq,
            "uptake_s": dose.uptake_s,
            "half_life_s": dose.half_life_s,
        },
        "plan": plan.as_dict(),
    }
    return SyntheticPatient(
        seed=int(seed),
        index=int(index),
        size=size,
        grids=grids,
        ct=ct.to_image(ct_hu),
        pet=grids.pet.to_image(pet_suv),
        gtvp=ct.to_image(gtvp.astype(np.uint8)),
        gtvn=ct.to_image(gtvn.astype(np.uint8)),
        relapse=ct.to_image(relapse),
        brain=ct.to_image((brain_like[ct_rows]).astype(np.uint8)),
        body=ct.to_image((labels_ct != _ph.AIR).astype(np.uint8)),
        dose=dose,
        info=info,
        brain_roi=brain_roi,
        plan=plan,
    )
