"""How many points of origin (POs) can *any* mask of a given volume capture, under the synthetic relapse rule?

Issue 14 asks the demo's AI random to capture at least as many POs as the GTV contour with a median volume
<= 0.7 x the GTV's. This bench answers what the documented relapse rule (docs/synthetic_cohort.md) allows,
independent of any network: for each generated patient it takes the exact PO density of the rule
(:func:`nnunet_recur.synthetic.relapse.po_probability`) and the best possible mask of a volume budget (the
voxels of highest PO probability). No predictor can capture more POs in expectation at that volume.

It reports, over N patients of one size:

* the expected PO capture per patient of the GTV contour and of the best mask at 0.5 / 0.7 / 1.0 x the
  patient's GTV volume and at fixed budgets (first component; second components follow a restricted draw);
* with the POs the generator actually drew (first and second components): the chance that on a random
  test set of K patients the best 0.7 x GTV mask captures at least as many POs as the GTV (the issue's
  criterion, ties count), by resampling test sets from the N patients.

    python bench/po_capture_bound.py --out /tmp/po_bound --patients 200 --size demo

With ``--test-set`` it analyses one converted test set instead: the ``role == test`` rows of a
``recur convert inhouse`` report (``recur_reports/Dataset502_SynthRecur/cases.csv``), each patient generated
again from ``--seed`` (the in-house cohort's seed: ``recur demo --seed S`` synthesises it with S + 1).

    python bench/po_capture_bound.py --out /tmp/po_default --size demo --seed 2024 \
        --test-set demo_out/recur_reports/Dataset502_SynthRecur/cases.csv

Writes OUT/po_capture_bound.json and .md (OUT/test_set.json and .md with --test-set).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

import nnunet_recur.synthetic.patient as synthetic_patient
from nnunet_recur.synthetic.relapse import po_probability, zone_map

FRACTIONS_OF_GTV = (0.5, 0.7, 1.0)
FIXED_BUDGETS_CC = (10.0, 15.0, 20.0, 30.0)


def rule_inputs(seed: int, index: int, size: str) -> tuple[dict, dict]:
    """Generate one patient and keep the CT-grid arrays the generator hands to the relapse rule."""
    seen: dict = {}
    make_relapse = synthetic_patient.make_relapse

    def recording(labels, gtv, pet_avid, uptake, grid, z_skull_base, rng):
        seen.update(labels=labels, gtv=gtv, pet_avid=pet_avid, uptake=uptake, grid=grid, z=z_skull_base)
        return make_relapse(labels, gtv, pet_avid, uptake, grid, z_skull_base, rng)

    synthetic_patient.make_relapse = recording
    try:
        patient = synthetic_patient.generate_patient(seed, index, size)
    finally:
        synthetic_patient.make_relapse = make_relapse
    return seen, patient.info


def analyse_patient(seed: int, index: int, size: str) -> dict:
    a, info = rule_inputs(seed, index, size)
    zones = zone_map(a["labels"], a["gtv"], a["pet_avid"], a["grid"], a["z"])
    p = po_probability(zones, a["uptake"]).ravel()
    vox = a["grid"].voxel_volume_cc
    gtv = a["gtv"][zones.box].ravel()
    order = np.argsort(p)[::-1]
    cumulative = np.cumsum(p[order])

    def best(cc: float) -> float:
        k = min(int(round(cc / vox)), p.size)
        return float(cumulative[k - 1]) if k > 0 else 0.0

    gtv_cc = float(gtv.sum() * vox)
    k07 = int(round(0.7 * gtv_cc / vox))
    best07 = np.zeros(p.size, dtype=bool)
    best07[order[:k07]] = True
    shape = zones.codes.shape
    starts = [s.start for s in zones.box]
    pos: list[dict] = []
    for rec in info["points_of_origin"]:
        local = tuple(int(i) - s for i, s in zip(rec["po_index_zyx"], starts, strict=True))
        inside = all(0 <= v < n for v, n in zip(local, shape, strict=True))
        flat = int(np.ravel_multi_index(local, shape)) if inside else None
        pos.append(
            {
                "zone": rec["zone"],
                "in_gtv": bool(flat is not None and gtv[flat]),
                "in_best_0.7xGTV": bool(flat is not None and best07[flat]),
            }
        )
    return {
        "index": index,
        "gtv_cc": gtv_cc,
        "expected_capture_gtv": float(p[gtv].sum()),
        **{f"expected_capture_best_{f}xGTV": best(f * gtv_cc) for f in FRACTIONS_OF_GTV},
        **{f"expected_capture_best_{c:g}cc": best(c) for c in FIXED_BUDGETS_CC},
        "points_of_origin": pos,
    }


def test_set_odds(rows: list[dict], k: int, draws: int, rng: np.random.Generator) -> dict:
    """P(best 0.7 x GTV mask captures >= the GTV's POs) on random k-patient test sets (actual POs)."""
    gtv_hits = np.array([sum(p["in_gtv"] for p in r["points_of_origin"]) for r in rows])
    best_hits = np.array([sum(p["in_best_0.7xGTV"] for p in r["points_of_origin"]) for r in rows])
    wins = ties = 0
    for _ in range(draws):
        pick = rng.choice(len(rows), size=k, replace=False)
        a, g = best_hits[pick].sum(), gtv_hits[pick].sum()
        wins += a >= g
        ties += a == g
    return {"test_patients": k, "draws": draws, "p_best_ge_gtv": wins / draws, "p_tie": ties / draws}


def analyse_test_set(cases_csv: Path, seed: int, size: str) -> dict:
    """PO capture of the GTV and of the best 0.7 x GTV mask on the test patients of a converted cohort."""
    with Path(cases_csv).open(newline="") as f:
        test = [r for r in csv.DictReader(f) if r.get("role") == "test"]
    rows = []
    for r in test:
        index = int(r["patient"].rsplit("_", 1)[1]) - 1  # PAT_<seed>_<NNN>, numbered from 1
        a = analyse_patient(seed, index, size)
        pos = a["points_of_origin"]
        rows.append(
            {
                "case": r["case"],
                "gtv_cc": round(a["gtv_cc"], 1),
                "zones": [p["zone"] for p in pos],
                "gtv": sum(p["in_gtv"] for p in pos),
                "best_0.7xGTV": sum(p["in_best_0.7xGTV"] for p in pos),
            }
        )
    totals = {k: sum(r[k] for r in rows) for k in ("gtv", "best_0.7xGTV")}
    n_pos = sum(len(r["zones"]) for r in rows)
    return {"cases_csv": str(cases_csv), "seed": seed, "size": size, "pos": n_pos, "captured": totals,
            "patients": rows}  # fmt: skip


def test_set_markdown(result: dict) -> str:
    lines = [
        "| case | GTV cc | PO zones | POs in GTV | POs in best 0.7 x GTV mask |",
        "|---|---:|---|---:|---:|",
    ]
    for r in result["patients"]:
        lines.append(
            f"| {r['case']} | {r['gtv_cc']} | {', '.join(r['zones'])} | {r['gtv']} | {r['best_0.7xGTV']} |"
        )
    c = result["captured"]
    lines.append(f"| **total** ({len(result['patients'])} patients) | | {result['pos']} POs | {c['gtv']} | "
                 f"{c['best_0.7xGTV']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    s = result["summary"]
    lines = [
        f"PO capture bound: {result['patients']} `{result['size']}` patients (seed {result['seed']}), "
        f"median GTV {s['median_gtv_cc']:.1f} cc, {result['seconds']:.0f} s.",
        "",
        "| mask | expected POs captured per patient (first component) |",
        "|---|---:|",
        f"| GTV contour | {s['expected_capture_gtv']:.3f} |",
    ]
    for f in FRACTIONS_OF_GTV:
        lines.append(f"| best mask, {f} x GTV volume | {s[f'expected_capture_best_{f}xGTV']:.3f} |")
    for c in FIXED_BUDGETS_CC:
        lines.append(f"| best mask, {c:g} cc | {s[f'expected_capture_best_{c:g}cc']:.3f} |")
    lines += ["", "| test patients | P(best 0.7 x GTV mask >= GTV POs) | of which ties |", "|---:|---:|---:|"]
    for o in result["test_set_odds"]:
        lines.append(f"| {o['test_patients']} | {o['p_best_ge_gtv']:.2f} | {o['p_tie']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--size", default="demo", choices=["demo", "small"])
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--test-patients", type=int, nargs="+", default=[8, 11, 20])
    ap.add_argument("--draws", type=int, default=20000)
    ap.add_argument("--test-set", type=Path, help="a converter's cases.csv: analyse its test patients only")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.test_set:
        one = analyse_test_set(args.test_set, args.seed, args.size)
        (args.out / "test_set.json").write_text(json.dumps(one, indent=2))
        text = test_set_markdown(one)
        (args.out / "test_set.md").write_text(text)
        print(text)
        return 0

    start = time.perf_counter()
    rows = [analyse_patient(args.seed, i, args.size) for i in range(args.patients)]
    keys = [k for k in rows[0] if k.startswith("expected_capture")]
    summary = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    summary["median_gtv_cc"] = float(np.median([r["gtv_cc"] for r in rows]))
    rng = np.random.default_rng(args.seed)
    odds = [test_set_odds(rows, k, args.draws, rng) for k in args.test_patients if k <= len(rows)]
    result = {
        "size": args.size,
        "seed": args.seed,
        "patients": args.patients,
        "seconds": time.perf_counter() - start,
        "summary": summary,
        "test_set_odds": odds,
        "per_patient": rows,
    }
    (args.out / "po_capture_bound.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (args.out / "po_capture_bound.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
