"""Head-and-neck phantom: tissue labels, CT in HU and PET in SUV, rendered from per-patient shapes.

The anatomy is drawn slice by slice from simple analytic shapes whose size and position vary with the
height ``s`` above the skull base (``s`` < 0: neck, ``s`` > 0: head):

- body outline: neck ellipse widening towards the shoulders, blending into the head ellipse;
  subcutaneous fat (HU -100) in the neck, soft tissue (HU 40) inside;
- airway (air): trachea/larynx, oropharynx, nasopharynx, nasal cavity;
- bone: cervical spine (vertebral bodies of marrow ~700 HU in a cortical shell ~1100 HU, discs, arch and
  spinous process around the spinal canal), mandible (body and rami), skull with a skull base;
- brain (grey ~35 HU, a central white-matter core) inside the skull at the cranial end;
- parotid and submandibular glands; the primary tumour GTVp in the lateral oropharyngeal wall and, in
  about 60 % of patients, a level II/III node GTVn (both from ``lesions``).

PET (SUV, before blur): air 0, fat ~0.4, soft tissue/muscle 0.8-1.2, marrow 1.3-1.8, glands 1.6-3,
brain 7-10 (white matter 0.8 x), GTVp a rim of SUV 2.5-4.5 rising to a nominal SUVmax 8-32 in an
eccentric hot core, GTVn 2-4 rising to 4-12. The uptake is blurred to 6 mm FWHM on the working grid (the
primary tumour's contrast is then scaled so that its blurred SUVmax hits a drawn target of 6.5-25),
resampled onto the PET grid and given SUV-dependent Gaussian noise; CT gets slight blur and 12 HU noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_recur.synthetic.geometry import Grid, PatientGrids, resample_linear

# tissue labels
AIR, FAT, SOFT, AIRWAY, CORTICAL, MARROW, BRAIN, BRAIN_WM, PAROTID, SUBMAND, CSF, GTVP, GTVN = range(13)
N_TISSUES = 13
BONE = (CORTICAL, MARROW)
#: tissues a tumour may grow into (not bone, brain, canal).
SOFT_TISSUES = (FAT, SOFT, AIRWAY, PAROTID, SUBMAND)

PET_FWHM_MM = 6.0

#: height of the CT's first slice above the skull base (mm) per size profile.
CT_BOTTOM_S = {"small": -125.0, "demo": -125.0, "paper": -155.0}


@dataclass(frozen=True)
class Anatomy:
    """Per-patient shape parameters (mm; body centre in patient x/y, skull base height z)."""

    cx: float
    cy: float
    z_skull_base: float
    neck_a: float
    neck_b: float
    head_a: float
    head_b: float
    fat_mm: float
    airway_rx: float
    airway_ry: float
    trachea_r: float
    disc_phase: float
    shoulder_cap: float


def draw_anatomy(grids: PatientGrids, size: str, rng: np.random.Generator) -> Anatomy:
    ct = grids.ct
    half_fov = 0.5 * ct.spacing[0] * ct.size[0]
    return Anatomy(
        cx=float(rng.uniform(-4, 4)),
        cy=float(rng.uniform(-4, 4)),
        z_skull_base=ct.origin[2] - CT_BOTTOM_S[size] + float(rng.uniform(-4, 4)),
        neck_a=float(rng.uniform(52, 62)),
        neck_b=float(rng.uniform(56, 66)),
        head_a=float(rng.uniform(68, 74)),
        head_b=float(rng.uniform(80, 86)),
        fat_mm=float(rng.uniform(5, 12)),
        airway_rx=float(rng.uniform(9, 13)),
        airway_ry=float(rng.uniform(5, 8)),
        trachea_r=float(rng.uniform(7, 9)),
        disc_phase=float(rng.uniform(0, 17)),
        shoulder_cap=min(96.0, half_fov - 12.0),
    )


def _ellipse(X, Y, cx, cy, a, b):
    """Normalised elliptic radius (< 1 inside)."""
    return np.sqrt(((X - cx) / max(a, 1e-3)) ** 2 + ((Y - cy) / max(b, 1e-3)) ** 2)


def body_outline(s: float, an: Anatomy) -> tuple[float, float, float] | None:
    """(centre y, semi-axis x, semi-axis y) of the body at height s, None above the vertex."""
    if s <= -40:
        a = min(an.neck_a + max(0.0, -115.0 - s) * 0.9, an.shoulder_cap)
        return an.cy, a, an.neck_b
    if s < 0:
        t = (s + 40) / 40
        return an.cy - 8 * t, an.neck_a + t * (an.head_a - an.neck_a), an.neck_b + t * (an.head_b - an.neck_b)
    f = 1.0 if s <= 55 else 1 - ((s - 55) / 75) ** 2
    if f <= 0.02:
        return None
    f = float(np.sqrt(f))
    return an.cy - 8, an.head_a * f, an.head_b * f


def render_tissues(grid: Grid, an: Anatomy) -> np.ndarray:
    """Tissue label array ``[z, y, x]`` (uint8) of the anatomy without tumours."""
    x = grid.axis(0)
    y = grid.axis(1)
    X = x[None, :]
    Y = y[:, None]
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for k, z in enumerate(grid.axis(2)):
        s = z - an.z_skull_base
        outline = body_outline(s, an)
        if outline is None:
            continue
        cyb, a, b = outline
        sl = labels[k]
        body = _ellipse(X, Y, an.cx, cyb, a, b) <= 1
        sl[body] = SOFT
        if s < -15:  # subcutaneous fat in the neck
            sl[body & (_ellipse(X, Y, an.cx, cyb, a - an.fat_mm, b - an.fat_mm) > 1)] = FAT
        # airway
        if s < -60:
            sl[_ellipse(X, Y, an.cx, an.cy - 0.45 * an.neck_b, an.trachea_r, an.trachea_r) <= 1] = AIRWAY
        elif s < -5:
            sl[_ellipse(X, Y, an.cx, an.cy - 0.2 * an.neck_b, an.airway_rx, an.airway_ry) <= 1] = AIRWAY
        elif s < 12:
            cy_np = an.cy - 0.2 * an.neck_b - (s + 5) * 1.0
            sl[_ellipse(X, Y, an.cx, cy_np, 11, 8) <= 1] = AIRWAY
        if -10 <= s < 30:
            sl[_ellipse(X, Y, an.cx, cyb - 0.62 * b, 8, 14) <= 1] = AIRWAY
        # cervical spine
        if s < -6:
            vb_y = an.cy + 0.18 * an.neck_b + 4
            r_vb = _ellipse(X, Y, an.cx, vb_y, 10, 10)
            disc = s < -20 and ((s - an.disc_phase) % 17.0) < 4.0
            if disc:
                sl[r_vb <= 1] = SOFT
            else:
                sl[r_vb <= 1] = CORTICAL
                sl[r_vb <= 0.85] = MARROW
            canal_y = vb_y + 17
            r_canal = _ellipse(X, Y, an.cx, canal_y, 1, 1)  # distance in mm
            arch = (r_canal > 6.5) & (r_canal <= 10.5) & (Y > vb_y + 6)
            spinous = (np.abs(X - an.cx) < 3) & (Y > canal_y + 8) & (Y < canal_y + 28) & (np.ones_like(X) > 0)
            inner = _ellipse(X, Y, an.cx, cyb, a - an.fat_mm - 2, b - an.fat_mm - 2) <= 1
            sl[(arch | spinous) & inner] = CORTICAL
            sl[r_canal <= 6.5] = CSF
        # mandible: body (s -78..-55) and rami (-55..-28)
        if -78 <= s < -28:
            am, bm = 0.78 * an.neck_a, 0.72 * an.neck_b
            cym = an.cy - 0.02 * an.neck_b
            q = _ellipse(X, Y, an.cx, cym, am, bm)
            ring = (np.abs(q - 1) * 0.5 * (am + bm) < 3.5) & (Y < cym + 8)
            if s >= -55:
                ring &= np.abs(X - an.cx) > 0.62 * am
            sl[ring] = CORTICAL
        # skull, skull base, brain
        if s >= -4:
            cyh = cyb
            outer = _ellipse(X, Y, an.cx, cyh, a - 5, b - 5) <= 1
            inner = _ellipse(X, Y, an.cx, cyh, a - 12, b - 12) <= 1
            if s >= 0:
                sl[outer & ~inner] = CORTICAL
            if s < 5:
                plate = inner & (Y > cyh - 0.1 * b) & (sl != AIRWAY)
                sl[plate] = CORTICAL
            else:
                front = cyh - (b - 12) * min(1.0, (s - 5) / 30.0)
                brain = inner & (Y > front)
                sl[brain] = BRAIN
                if 25 <= s <= 100:
                    wm = _ellipse(X, Y, an.cx, cyh + 5, 0.5 * (a - 12), 0.5 * (b - 12)) <= 1
                    sl[wm & brain] = BRAIN_WM
        # glands (ellipsoids)
        for side in (-1, 1):
            r = ((X - (an.cx + side * (an.neck_a - 15))) / 9) ** 2 + (
                (Y - (an.cy + 0.05 * an.neck_b)) / 14
            ) ** 2
            r = r + ((s + 22) / 18) ** 2
            sl[(r <= 1) & ((sl == SOFT) | (sl == FAT))] = PAROTID
            r = ((X - (an.cx + side * 0.52 * an.neck_a)) / 9) ** 2 + (
                (Y - (an.cy - 0.45 * an.neck_b)) / 9
            ) ** 2
            r = r + ((s + 66) / 9) ** 2
            sl[(r <= 1) & ((sl == SOFT) | (sl == FAT))] = SUBMAND
    return labels


HU_TABLE = {
    AIR: -1000,
    FAT: -100,
    SOFT: 40,
    AIRWAY: -1000,
    CORTICAL: 1100,
    MARROW: 700,
    BRAIN: 35,
    BRAIN_WM: 28,
    PAROTID: -10,
    SUBMAND: 45,
    CSF: 10,
    GTVP: 55,
    GTVN: 50,
}


def make_ct_hu(
    labels: np.ndarray, rng: np.random.Generator, noise_hu: float = 12.0, kernel_sigma: float = 0.5
) -> np.ndarray:
    """CT in HU (int16): tissue table with per-patient variation, slight blur, 12 HU noise (defaults).

    `noise_hu` and `kernel_sigma` (voxels) differ per site in a multi-site cohort (synthetic/sites.py)."""
    table = np.array([HU_TABLE[i] for i in range(N_TISSUES)], dtype=np.float32)
    table[FAT] += rng.uniform(-15, 15)
    table[CORTICAL] = rng.uniform(1000, 1200)
    table[MARROW] = rng.uniform(680, 800)
    hu = table[labels]
    hu = ndimage.gaussian_filter(hu, sigma=kernel_sigma, mode="nearest", truncate=2.0)
    hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def base_uptake_table(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """SUV per tissue (before blur) and the patient's brain SUV."""
    brain = float(rng.uniform(7.0, 10.0))
    table = np.zeros(N_TISSUES, dtype=np.float32)
    table[FAT] = rng.uniform(0.35, 0.5)
    table[SOFT] = rng.uniform(0.8, 1.2)
    table[CORTICAL] = 0.25
    table[MARROW] = rng.uniform(1.3, 1.8)
    table[BRAIN] = brain
    table[BRAIN_WM] = 0.8 * brain
    table[PAROTID] = rng.uniform(1.8, 3.0)
    table[SUBMAND] = rng.uniform(1.6, 2.6)
    table[CSF] = 0.2
    return table, brain


def blur_pet(uptake: np.ndarray, phantom: Grid, fwhm_mm: float = PET_FWHM_MM) -> np.ndarray:
    """The scanner's resolution: Gaussian blur to `fwhm_mm` on the working grid (float32)."""
    sigma_mm = fwhm_mm / (2 * np.sqrt(2 * np.log(2)))
    sigma = (sigma_mm / phantom.spacing[2], sigma_mm / phantom.spacing[1], sigma_mm / phantom.spacing[0])
    return ndimage.gaussian_filter(uptake.astype(np.float32), sigma=sigma, mode="constant", truncate=3.0)


def resample_with_noise(
    blurred: np.ndarray, phantom: Grid, pet: Grid, rng: np.random.Generator, noise_factor: float = 1.0
) -> np.ndarray:
    """Resample the blurred SUV onto the PET grid and add SUV-dependent Gaussian noise (float32, >= 0)."""
    suv = resample_linear(blurred, phantom, pet)
    noise_sd = noise_factor * (0.03 + 0.07 * np.sqrt(np.maximum(suv, 0)))
    suv = suv + noise_sd * rng.standard_normal(size=suv.shape).astype(np.float32)
    return np.maximum(suv, 0).astype(np.float32)


def smooth_modulation(grid: Grid, rng: np.random.Generator, amplitude: float = 0.12) -> np.ndarray:
    """A separable, smooth multiplicative field (1 +- amplitude) for non-uniform background uptake."""
    factors = []
    for axis_xyz in (2, 1, 0):
        t = grid.axis(axis_xyz)
        phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(80, 200)
        factors.append(1 + amplitude / 3 * np.sin(2 * np.pi * t / period + phase))
    return (factors[0][:, None, None] * factors[1][None, :, None] * factors[2][None, None, :]).astype(
        np.float32
    )
