"""TF Serving's model layout: ``EXPORT_ROOT/NAME/<integer version>/``.

A version is written beside its final place and renamed in, so TF Serving's
file-system poller (and ``ftx serve``) never sees a half-written version, and
an existing version is never overwritten. An export the parity gate refused
lands in ``NAME/<version>.not_blessed/``: TF Serving only loads integer-named
directories, so it is kept for inspection without being served, and its
number is not reused.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from export.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REJECTED_SUFFIX = ".not_blessed"
BLESSED_MARKER = "BLESSED"  # written beside the manifest by export.pipeline when the parity gate passes
VERSION_PATTERN = re.compile(r"^(0|[1-9][0-9]{0,18})$")  # ASCII digits only: str.isdigit() also accepts '²'
INT64_MAX = 2**63 - 1


def parse_version(name: str) -> int | None:
    """The version a directory name stands for, or None: canonical ASCII int64 only (TF Serving parses int64)."""
    if not VERSION_PATTERN.match(name):
        return None
    version = int(name)
    return version if version <= INT64_MAX else None


class VersionError(ValueError):
    """A model name or version that cannot be used."""


def check_model_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise VersionError(f"model name {name!r} must be 1-128 letters, digits, '_', '.', '-' "
                           "and start with a letter or digit")
    return name


def existing_versions(model_dir: Path) -> list[int]:
    """Integer-named version directories (what TF Serving loads); temporary ones are ignored."""
    if not model_dir.is_dir():
        return []
    return sorted(v for p in model_dir.iterdir() if p.is_dir() and (v := parse_version(p.name)) is not None)


def rejected_versions(model_dir: Path) -> list[int]:
    """Versions whose export the parity gate refused (``<N>.not_blessed``)."""
    if not model_dir.is_dir():
        return []
    names = (p.name[:-len(REJECTED_SUFFIX)] for p in model_dir.iterdir()
             if p.is_dir() and p.name.endswith(REJECTED_SUFFIX))
    return sorted(v for n in names if (v := parse_version(n)) is not None)


def rejected_dir(model_dir: Path, version: int) -> Path:
    return model_dir / f"{version}{REJECTED_SUFFIX}"


def choose_version(model_dir: Path, requested: int | None) -> int:
    """The next free version, or ``requested`` if it is a free positive integer."""
    versions = existing_versions(model_dir)
    taken = sorted(set(versions) | set(rejected_versions(model_dir)))
    next_free = (taken[-1] + 1) if taken else 1
    if requested is None:
        return next_free
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise VersionError(f"--version must be a positive integer, got {requested!r}")
    if requested in versions or (model_dir / str(requested)).exists():
        raise VersionError(f"version {requested} of {model_dir.name} already exists at {model_dir / str(requested)}; "
                           f"existing versions: {versions}; omit --version to take {next_free}")
    if rejected_dir(model_dir, requested).exists():
        raise VersionError(f"version {requested} of {model_dir.name} was refused by the parity gate and kept at "
                           f"{rejected_dir(model_dir, requested)}; delete that directory to reuse the number, "
                           f"or omit --version to take {next_free}")
    return requested


def chosen_version_dir(path: Path | str, version: int | None = None, what: str = "using") -> Path:
    """A version directory from what a user names: the version itself, or the model base path TF Serving takes.

    A base path gives its newest blessed version (``version`` picks another),
    as ``ftx serve`` and TF Serving serve the newest one. VersionError says
    what was given and what to give instead.
    """
    path = Path(path).expanduser()
    if path.name.endswith(".partial"):
        raise VersionError(f"{path} is a half-written export; rerun `ftx export` and use the version it publishes")
    if not path.is_dir():
        raise VersionError(f"{path}: no such export directory (give a model base path, exports/NAME, or a version "
                           "directory, exports/NAME/1)")
    if (path / MANIFEST_FILE).is_file():
        if version is not None:
            raise VersionError(f"{path} is one version already; give its base path {path.parent} with --version")
        return path
    versions = [v for v in existing_versions(path) if (path / str(v) / MANIFEST_FILE).is_file()]
    if not versions:
        raise VersionError(f"{path} has no {MANIFEST_FILE} and no version directories holding one: not an ftx "
                           "export (give exports/NAME or exports/NAME/<version>)")
    if version is not None:
        if version not in versions:
            raise VersionError(f"{path} has no version {version}; it has {', '.join(map(str, versions))}")
        chosen = version
    else:
        blessed = [v for v in versions if (path / str(v) / BLESSED_MARKER).is_file()]
        if not blessed:
            raise VersionError(f"{path} has no blessed version (versions {', '.join(map(str, versions))} were "
                               "published unblessed); choose one with --version")
        chosen = blessed[-1]
    log.info("%s %s version %d (%s)", what, path, chosen,
             "as asked" if version is not None else "the newest blessed one")
    return path / str(chosen)
