"""Run one job per case, in worker processes when asked, with a rich progress bar.

Results come back in the order of the cases given, whatever order the workers finish in. The first
error stops the run (pending cases are cancelled) and is re-raised in the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # Alike in shape to `recur synth`'s bar, which the generator keeps for itself (it imports no evaluation).
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
        disable=not enabled,
        console=Console(stderr=True),
    )


def map_cases(
    job: Callable[[str], T],
    cases: Sequence[str],
    workers: int = 1,
    description: str = "cases",
    progress: bool = True,
) -> list[T]:
    """`[job(case) for case in cases]`, over `workers` processes (`job` must be picklable)."""
    cases = list(cases)
    results: dict[str, T] = {}
    with _progress(progress) as bar:
        task = bar.add_task(description, total=len(cases))
        if workers <= 1 or len(cases) <= 1:
            for case in cases:
                results[case] = job(case)
                bar.advance(task)
        else:
            from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

            with ProcessPoolExecutor(max_workers=min(workers, len(cases))) as pool:
                futures = {pool.submit(job, case): case for case in cases}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        error = future.exception()
                        if error is not None:
                            for other in pending:
                                other.cancel()
                            raise error
                        results[futures[future]] = future.result()
                        bar.advance(task)
    return [results[case] for case in cases]
