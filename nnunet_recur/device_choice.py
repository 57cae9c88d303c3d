"""The one ``--device`` of every command (`recur predict`, `demo`, `cv`, `study run`): auto|cpu|cuda|mps.

``auto`` (the default) means what torch sees on the machine that runs the work: CUDA, else Apple's MPS, else
the CPU. Jobs that a scheduler runs on other machines (a Slurm executor) cannot be probed from the driver, so
there ``auto`` means ``cuda``, nnU-Net's own default. An explicit ``cuda`` or ``mps`` is checked where the
work runs here, so a missing GPU is one clear error instead of a traceback deep in torch. nnU-Net's
``-device`` takes the same three concrete values. Light on purpose: torch is imported only to answer
``auto`` or to check an explicit GPU.
"""

from __future__ import annotations

from enum import Enum

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DEVICE_HELP = "auto (cuda if torch sees a GPU, else mps, else cpu), cpu, cuda or mps."


class DeviceChoice(str, Enum):
    """The values ``--device`` takes (a typer option type: a wrong value is a usage error, exit status 2)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class DeviceError(ValueError):
    """A device that is not one of :data:`DEVICE_CHOICES`, or a GPU this machine does not have."""


def _available() -> set[str]:
    try:
        import torch  # noqa: PLC0415
    except ImportError:  # pragma: no cover - torch is a dependency
        return {"cpu"}
    found = {"cpu"}
    if torch.cuda.is_available():
        found.add("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.add("mps")
    return found


def resolve_device(choice: str | DeviceChoice, *, runs_here: bool = True) -> str:
    """``cpu``, ``cuda`` or ``mps`` for a ``--device`` value.

    ``runs_here``: the work runs on this machine (False for jobs a scheduler places elsewhere: ``auto`` is
    then ``cuda`` and nothing is checked here).
    """
    value = choice.value if isinstance(choice, DeviceChoice) else str(choice)
    if value not in DEVICE_CHOICES:
        raise DeviceError(f"--device {value!r}: choose auto, cpu, cuda or mps")
    if not runs_here:
        return "cuda" if value == "auto" else value
    available = _available()
    if value == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if d in available)
    if value not in available:
        raise DeviceError(f"--device {value}: torch sees no {value.upper()} device on this machine")
    return value
