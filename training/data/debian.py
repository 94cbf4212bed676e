"""Fetch files out of a Debian package without root: ``apt-get download`` + ``dpkg-deb -x``.

Debian ships some datasets as packages (``dataset-fashion-mnist``), and the
Debian mirror is reachable where the rest of the internet is not. Nothing is
installed system-wide: the ``.deb`` is downloaded into a temporary folder and
unpacked there. When the machine has no package lists (a fresh container) or
the system's lists do not know the package, ``apt-get update`` runs with its
lists and cache under the ftx cache, which needs no root either.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from training.atomic import staged_directory
from training.children import tied_to_parent
from training.data.records import DataError

log = logging.getLogger(__name__)

TIMEOUT_S = 900


def _private_options(state: Path) -> list[str]:
    """apt options that keep lists, caches and locks under ``state``."""
    for sub in ("lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "Dir::State::Lists": state / "lists",
        "Dir::Cache": state / "cache",
        "Debug::NoLocking": "1",
    }
    if os.geteuid() == 0:  # root would hand downloads to the '_apt' user, who cannot write here
        options["APT::Sandbox::User"] = "root"
    return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    log.debug("running %s", " ".join(command))
    try:
        return subprocess.run(tied_to_parent(command), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)  # apt-get dies with ftx, even on SIGKILL
    except subprocess.TimeoutExpired as error:
        raise DataError(f"{' '.join(command)} did not finish in {TIMEOUT_S} s") from error


def download_deb(package: str, workdir: Path, state: Path) -> Path:
    """The ``.deb`` of ``package`` in ``workdir``, using the system's lists, else private fresh ones."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DataError(f"{tool} not found: cannot fetch Debian package {package!r} on this system")
    result = _run(["apt-get", "download", package], workdir)
    if result.returncode != 0:
        log.info("apt-get download %s with the system's package lists failed (%s); "
                 "updating private package lists in %s", package, result.stderr.strip()[-200:], state)
        options = _private_options(state)
        update = _run(["apt-get", *options, "update"], workdir)
        if update.returncode != 0:
            raise DataError(f"apt-get update (lists in {state}) failed: {update.stderr.strip()[-500:]}")
        result = _run(["apt-get", *options, "download", package], workdir)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataError(f"apt-get download {package} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    log.info("downloaded %s (%.1f MB)", debs[-1].name, debs[-1].stat().st_size / 1e6)
    return debs[-1]


def extract_deb_folder(deb: Path, member_dir: str, dest: Path) -> Path:
    """Unpack ``deb`` and move the files under its ``member_dir`` (e.g. ``usr/share/x``) to ``dest``, atomically."""
    with tempfile.TemporaryDirectory(prefix=".deb-", dir=dest.parent) as scratch:
        result = _run(["dpkg-deb", "-x", str(deb), scratch], Path(scratch))
        source = Path(scratch) / member_dir
        if result.returncode != 0 or not source.is_dir():
            raise DataError(f"dpkg-deb -x {deb} gave no {member_dir}: {result.stderr.strip()[-500:]}")
        with staged_directory(dest) as stage:
            for item in source.iterdir():
                shutil.move(str(item), stage / item.name)
    return dest


def fetch_package_folder(package: str, member_dir: str, dest: Path, state: Path) -> Path:
    """Download ``package`` and keep only its ``member_dir`` as ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".apt-download-", dir=dest.parent) as workdir:
        deb = download_deb(package, Path(workdir), state)
        return extract_deb_folder(deb, member_dir, dest)
