"""`recur synth`: write a synthetic head-and-neck FDG-PET/CT cohort (thin wrapper over ``make_cohort``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from nnunet_recur.exit_status import BAD_INPUT


class CohortFormat(str, Enum):
    inhouse_dicom = "inhouse-dicom"
    inhouse_nifti = "inhouse-nifti"
    hecktor = "hecktor"


class CohortSize(str, Enum):
    small = "small"
    demo = "demo"
    paper = "paper"


def synth(
    out: Path = typer.Argument(
        ..., help="Output folder (created); patients go to OUT/patients or OUT/imagesTr."
    ),
    cases: int = typer.Option(20, "--cases", min=1, help="Number of patients to generate."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives the same cohort."),
    fmt: CohortFormat = typer.Option(
        CohortFormat.inhouse_dicom,
        "--format",
        help="inhouse-dicom (CT/PET series + RTSTRUCT per patient), "
        "inhouse-nifti (ct/pet/gtv/relapse.nii.gz) "
        "or hecktor (HECKTOR 2022 release layout, GTVp/GTVn labels).",
    ),
    size: CohortSize = typer.Option(
        CohortSize.small,
        "--size",
        help="small: ~230k CT voxels per patient (coarser spacing, CPU tests); "
        "demo: the small field of view at twice its voxel size (~30k CT voxels, CPU demo); "
        "paper: 512 x 512 CT at 0.9765 x 0.9765 x 2 mm, PET at 2.036 x 2.036 x 2 mm.",
    ),
    # Alike in shape to other commands' flags (recur-eval's --all-cases): typer options live in the signature.
    defects: bool = typer.Option(
        False,
        "--defects",
        help="Break a few patients with the paper's exclusion causes (pet_missing, relapse_missing, "
        "pet_corrupt, uneven_spacing, missing_slice), listed in OUT/ground_truth/defects.json.",
    ),
    sites: str | None = typer.Option(
        None,
        "--sites",
        help="A multi-centre cohort: a number of sites (--sites 3, each of --cases patients) or the case "
        "count per site (--sites 30/15/8); one cohort per site in OUT/SITE_A, OUT/SITE_B, ... with its own "
        "scanner (PET FWHM and noise, SUV calibration, CT noise and kernel), listed in OUT/sites.json.",
    ),
) -> None:
    """Write a synthetic head-and-neck FDG-PET/CT cohort with known relapse ground truth.

    CT and PET on different grids; anatomy in HU; PET in SUV with a hot brain and a heterogeneous tumour.

    Relapses follow docs/synthetic_cohort.md (PO in PET-GTV/GTV/CTV1/CTV3/outside 55/12/17/6/10 %).

    Ground truth (CT-grid masks, points of origin in mm) goes to OUT/ground_truth/; reruns skip done patients.

    Example: recur synth synth_out --cases 20 --seed 0 --format inhouse-dicom --defects
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from nnunet_recur.synthetic.cohort import make_cohort
    from nnunet_recur.synthetic.multisite import make_sites_cohort
    from nnunet_recur.synthetic.sites import parse_sites

    console = Console(stderr=True)
    try:
        counts = parse_sites(sites, cases) if sites is not None else None
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(BAD_INPUT) from err
    skipped = 0
    # The synthetic generator keeps its own bar (alike in shape to evaluation/parallel.py's): it imports
    # nothing from the packages it is the test data of, and its bar has its own label and console.
    with Progress(
        TextColumn("[bold]synth[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"{fmt.value} ({size.value})", total=sum(counts) if counts else cases)

        def advance(name: str, was_skipped: bool) -> None:
            nonlocal skipped
            skipped += was_skipped
            bar.advance(task)

        try:
            if counts:
                by_site = make_sites_cohort(
                    out, counts, seed, fmt.value, size.value, defects, progress=advance
                )
                names = [name for site in by_site.values() for name in site]
            else:
                names = make_cohort(out, cases, seed, fmt.value, size.value, defects, progress=advance)
        except ValueError as err:
            console.print(f"[red]error:[/red] {err}")
            raise typer.Exit(BAD_INPUT) from err
    if counts:
        listing = ", ".join(f"{site} {len(n)}" for site, n in by_site.items())
        typer.echo(
            f"wrote {len(names)} synthetic patients at {len(counts)} sites ({listing}); "
            f"see {out / 'sites.json'}"
        )
        return
    where = out / ("imagesTr" if fmt is CohortFormat.hecktor else "patients")
    note = f" ({skipped} already there, skipped)" if skipped else ""
    typer.echo(
        f"wrote {len(names)} synthetic patients{note} to {where}; ground truth in {out / 'ground_truth'}"
    )
    if defects:
        typer.echo(f"defective patients listed in {out / 'ground_truth' / 'defects.json'}")
