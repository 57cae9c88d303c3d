"""From the commands' folder and case options to folders and case lists (`recur-eval`, every command).

Light on purpose (the evaluation modules are imported inside the functions), so that the CLI can import
it at start-up and `recur-eval --help` stays instant. Every problem is an EvaluationError naming the option.
"""

from __future__ import annotations

from pathlib import Path


def folders_from_dataset(dataset: str | None, split: str, **given: Path | None) -> dict[str, Path | None]:
    """Fill folders not given explicitly from an nnU-Net raw dataset (images/labels/masks + split)."""
    from nnunet_recur.evaluation.volumes import dataset_folders, find_dataset

    if dataset is None:
        return given
    found = dataset_folders(find_dataset(dataset), split)
    return {key: value if value is not None else found[key] for key, value in given.items()}


def require_option(value: Path | None, option: str) -> Path:
    from nnunet_recur.evaluation.volumes import EvaluationError

    if value is None:
        raise EvaluationError(f"{option} is required (or give --dataset)")
    return value


def case_selection(
    available: list[str], where: Path, cases: str | None, splits: Path | None = None, fold: int | None = None
) -> list[str]:
    from nnunet_recur.evaluation.volumes import (
        EvaluationError,
        cases_from_splits,
        parse_cases,
        select_cases,
    )

    requested = parse_cases(cases)
    if splits is not None or fold is not None:
        if requested is not None:
            raise EvaluationError("give either --cases or --splits/--fold, not both")
        if splits is None or fold is None:
            raise EvaluationError("--splits and --fold go together")
        requested = cases_from_splits(splits, fold)
    return select_cases(available, requested, where)
