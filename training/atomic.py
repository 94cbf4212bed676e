"""Atomic writes: a reader never sees a half-written file or directory.

Everything is written beside its destination under a temporary name and then
renamed, which POSIX makes atomic on one file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same directory.

    The temporary file's name carries the writer's process id, so the next
    write of the same path removes what a killed writer left behind (and
    leaves alone a live writer's file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_writers_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published files are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def remove_dead_writers_files(path: Path) -> list[Path]:
    """Remove ``.NAME.PID.*.tmp`` files beside ``path`` whose writer process no longer exists."""
    removed = []
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent):
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and not _process_exists(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_text(path: Path | str, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def staged_directory(final: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of ``final``; rename it to ``final`` on success.

    ``final`` must not exist. On an exception the temporary directory is removed
    and ``final`` is untouched. The directory gets mode 0755 (``mkdtemp`` makes
    it 0700), as an ordinary published folder would, since caches may be shared.
    It is owned (``training.staging``): one a killed process left is removed
    by the next call for the same ``final``.
    """
    from training import staging

    final = Path(final)
    if final.exists():
        raise FileExistsError(f"{final} already exists; refusing to overwrite it")
    staging.sweep(final.parent, ".", "ftx process", unowned=False)  # what SIGKILLs left here, owned ones only
    staging.sweep(final.parent, f".{final.name}.", "ftx process")  # and earlier tries at this very ``final``
    tmp = staging.make_stage(final.parent, f".{final.name}.")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        staging.discard(tmp)
        raise
    staging.release(tmp)
