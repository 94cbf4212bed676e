"""Staging directories that carry their owner, so the next run can clean up after a killed one.

A stage is a hidden ``.NAME.XXXX.partial`` directory beside its destination,
renamed into place when complete. SIGINT and SIGTERM remove it; SIGKILL
cannot. So each stage has a sibling ``.owner`` file, locked with ``flock``
for as long as its process lives: the kernel drops the lock when the process
dies, however it dies. ``sweep`` removes the stages whose lock it can take.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".partial"
OWNER_SUFFIX = ".owner"
UNOWNED_GRACE_S = 60.0  # a stage with no owner file is old ftx's, or one killed in the instant before locking

_held: dict[Path, int] = {}  # stage -> the locked owner file's descriptor, for this process's lifetime


def _owner_file(stage: Path) -> Path:
    return stage.with_name(stage.name + OWNER_SUFFIX)


def make_stage(parent: Path, prefix: str) -> Path:
    """A new owned stage ``parent/{prefix}XXXX.partial`` (mode 0755), locked until ``release``."""
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=prefix, suffix=SUFFIX, dir=parent))
    try:
        stage.chmod(0o755)
        fd = os.open(_owner_file(stage), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _owner_file(stage).unlink()
        raise
    _held[stage] = fd
    return stage


def release(stage: Path) -> None:
    """Drop the owner file of ``stage`` (published by a rename, or already removed)."""
    with contextlib.suppress(FileNotFoundError):
        _owner_file(stage).unlink()
    fd = _held.pop(stage, None)
    if fd is not None:
        os.close(fd)


def discard(stage: Path) -> None:
    """Remove ``stage`` and its owner file."""
    shutil.rmtree(stage, ignore_errors=True)
    release(stage)


def _unlocked(owner: Path) -> bool:
    """True when no process holds ``owner``'s lock (a second open file conflicts even in the same process)."""
    fd = os.open(owner, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _owner_is_dead(stage: Path, unowned: bool) -> bool:
    try:
        return _unlocked(_owner_file(stage))
    except FileNotFoundError:
        return unowned and time.time() - stage.stat().st_mtime > UNOWNED_GRACE_S


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def sweep(parent: Path, prefix: str = ".", what: str = "run", unowned: bool = True) -> list[Path]:
    """Remove the stages under ``parent`` whose owner died (e.g. SIGKILL), say so in one line, return them.

    ``unowned``: also those with no owner file, older than a minute (ftx's before owner files, or killed
    in the instant before locking). Off where ``prefix`` could match directories that are not ftx's.
    """
    if not parent.is_dir():
        return []
    removed, freed = [], 0
    for stage in sorted(parent.glob(f"{prefix}*{SUFFIX}")):
        try:
            if not stage.is_dir() or stage in _held or not _owner_is_dead(stage, unowned):
                continue
            freed += _size(stage)
        except OSError:  # vanished meanwhile, or unreadable: not ours to judge
            continue
        shutil.rmtree(stage, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            _owner_file(stage).unlink()
        removed.append(stage)
    for owner in parent.glob(f"{prefix}*{SUFFIX}{OWNER_SUFFIX}"):  # an owner file whose stage is gone
        stage = owner.with_name(owner.name[:-len(OWNER_SUFFIX)])
        if not stage.exists() and stage not in _held:
            with contextlib.suppress(OSError):
                if _unlocked(owner):
                    owner.unlink()
    if removed:
        log.warning("removed %d staging director%s left in %s by a killed %s (%.1f MB): %s", len(removed),
                    "y" if len(removed) == 1 else "ies", parent, what, freed / 1e6,
                    ", ".join(stage.name for stage in removed))
    return removed

