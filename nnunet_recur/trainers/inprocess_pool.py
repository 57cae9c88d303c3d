"""nnU-Net's planning pools, run in this process (:func:`nnunet_in_process`), for ``recur plan``.

nnU-Net runs its integrity check, fingerprint and preprocessing in a fresh ``spawn`` pool even for one
process, and each worker re-imports torch and nnunetv2; it also forks 12 copies of the planning process every
time it lists a dataset. While planning runs, the listing pool and - for ``num_processes == 1`` - the three
spawn pools are replaced by a pool that runs each call here, in order; nnU-Net's own per-case functions do the
work, so the outputs are the same files (trainers/planning.py says what it saves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager


class _FinishedCall:
    """What ``Pool.starmap_async`` returns, for a call that already ran: its errors surface at ``get()``."""

    def __init__(self, call: Callable[[], list]):
        self._error: BaseException | None = None
        try:
            self._value = call()
        except Exception as error:  # as in a real pool: re-raised where nnU-Net collects the result
            self._error = error

    def ready(self) -> bool:
        return True

    def get(self, timeout: float | None = None) -> list:
        if self._error is not None:
            raise self._error
        return self._value


class _ThisProcess:
    """Stands in for a pool worker in nnU-Net's "is every worker alive" poll."""

    def is_alive(self) -> bool:
        return True


class InProcessPool:
    """The part of ``multiprocessing.Pool`` nnU-Net's planning uses (``starmap``, ``starmap_async``,
    ``_pool``, ``with``), running every call in this process, in submission order."""

    def __init__(self, processes: int | None = None, *args, **kwargs):
        self._pool = [_ThisProcess()]

    def __enter__(self) -> InProcessPool:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def starmap(self, function: Callable, iterable: Iterable[Sequence]) -> list:
        return [function(*args) for args in iterable]

    def starmap_async(self, function: Callable, iterable: Iterable[Sequence]) -> _FinishedCall:
        return _FinishedCall(lambda: self.starmap(function, iterable))


class _InProcessContext:
    Pool = InProcessPool


class _InProcessMultiprocessing:
    """Replaces the ``multiprocessing`` module name inside the nnU-Net modules below (they only call
    ``multiprocessing.get_context("spawn").Pool(n)``)."""

    @staticmethod
    def get_context(method: str | None = None) -> _InProcessContext:
        return _InProcessContext()


@contextmanager
def nnunet_in_process(num_processes: int) -> Iterator[None]:
    """While inside: nnU-Net lists datasets without its 12-process fork pool, and with ``num_processes == 1``
    its integrity check, fingerprint extraction and preprocessing run in this process instead of a spawned
    one-worker pool. Only module attributes of nnU-Net's planning modules are swapped, and restored on exit,
    so nothing leaks into other commands; with more processes nnU-Net's own pools do the work."""
    import nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor as fingerprint_module
    import nnunetv2.experiment_planning.verify_dataset_integrity as integrity_module
    import nnunetv2.preprocessing.preprocessors.default_preprocessor as preprocessor_module
    import nnunetv2.utilities.utils as utils_module

    swaps: list[tuple[object, str, object]] = [(utils_module, "Pool", InProcessPool)]
    if num_processes == 1:
        swaps += [
            (module, "multiprocessing", _InProcessMultiprocessing)
            for module in (integrity_module, fingerprint_module, preprocessor_module)
        ]
    originals = [(module, attribute, getattr(module, attribute)) for module, attribute, _ in swaps]
    try:
        for module, attribute, replacement in swaps:
            setattr(module, attribute, replacement)
        yield
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)
