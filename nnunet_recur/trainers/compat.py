"""The nnunetv2 versions the trainers are written against.

The trainers replace parts of nnunetv2 2.8.1's training loop (``run_training``, ``train_step``, the data
loaders), its checkpoint dict and a module-level function of ``nnunetv2.run.run_training``; a later minor
release may rename any of them without an error, and the recipe would silently change. ``pyproject.toml``
pins the same range (:data:`SUPPORTED_NNUNETV2`); importing the trainers refuses any other version.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

SUPPORTED_NNUNETV2 = ">=2.8.1,<2.9"


class UnsupportedNnUNetVersion(ImportError):
    """The installed nnunetv2 lies outside :data:`SUPPORTED_NNUNETV2`."""


def installed_nnunetv2_version() -> str:
    try:
        return version("nnunetv2")
    except PackageNotFoundError as error:
        raise UnsupportedNnUNetVersion(
            "nnunetv2 is not installed; pip install 'nnunetv2" + SUPPORTED_NNUNETV2 + "'"
        ) from error


def check_nnunetv2_version(installed: str | None = None) -> str:
    """The installed (or given) version, or :class:`UnsupportedNnUNetVersion` naming the supported range."""
    installed = installed or installed_nnunetv2_version()
    if Version(installed) not in SpecifierSet(SUPPORTED_NNUNETV2):
        raise UnsupportedNnUNetVersion(
            f"nnunet-recur's trainers need nnunetv2{SUPPORTED_NNUNETV2} (they override its training loop and "
            f"checkpoint); found nnunetv2 {installed}. Install a supported version: "
            f"pip install 'nnunetv2{SUPPORTED_NNUNETV2}'"
        )
    return installed
