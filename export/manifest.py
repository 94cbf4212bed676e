"""``export_manifest.json``: what was exported, from what, with which tools, and whether it is blessed.

Every file of the version directory is listed with its size and sha256, so a
deployment can verify what it received; the artifacts section says which
files make up each format.
"""

from __future__ import annotations

import hashlib
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

MANIFEST_FILE = "export_manifest.json"
MANIFEST_VERSION = 1
# distribution names whose versions decide what the artifacts contain (first installed name wins)
LIBRARIES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "tf2onnx": ("tf2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "ai-edge-litert": ("ai-edge-litert",),
    "tensorflow-serving-api": ("tensorflow-serving-api",),
    "numpy": ("numpy",),
    "ftx": ("ftx",),
}


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, distributions in LIBRARIES.items():
        versions[name] = None
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entries(directory: Path, exclude: tuple[str, ...] = (MANIFEST_FILE,)) -> list[dict]:
    """Every file under ``directory`` (relative POSIX path, bytes, sha256), sorted by path."""
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative in exclude:
            continue
        entries.append({"path": relative, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return entries


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
