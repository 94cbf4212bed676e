"""Decode-check every file before training, so a bad file costs a warning, not a run.

Each file is opened and fully decoded with PIL (``load()`` is what catches a
truncated file). Problems are collected, never raised one at a time: the caller
either logs them all and goes on, or raises one ``DataError`` listing them all.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from training.data.records import DataError, Reason, Skipped

log = logging.getLogger(__name__)

HIDDEN_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\0", b"MM\0*", b"RIFF", b"P3", b"P5", b"P6")
PROGRESS_MIN_FILES = 2000  # below this the check takes about a second: no bar
WARN_MAX_NAMED = 50


def is_hidden(name: str) -> bool:
    """Dot files and the folders/files that macOS and Windows leave in copied datasets."""
    return name.startswith(".") or name in HIDDEN_NAMES


def check_image(path: Path) -> Skipped | None:
    """None when PIL can fully decode ``path``, else why not."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Skipped(path, Reason.MISSING)
    except OSError as error:
        return Skipped(path, Reason.UNREADABLE, str(error))
    if size == 0:
        return Skipped(path, Reason.EMPTY_FILE)
    try:
        with Image.open(path) as image:
            image.draft(None, (1, 1))  # JPEG decodes at 1/8 scale: faster, still reads every byte
            image.load()
    except UnidentifiedImageError:
        return _unidentified(path)
    except PermissionError as error:
        return Skipped(path, Reason.UNREADABLE, str(error))
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error... for bad data
        return Skipped(path, Reason.CORRUPT, f"{type(error).__name__}: {error}")
    return None


def _unidentified(path: Path) -> Skipped:
    """An image signature PIL could not parse past is a damaged image; anything else is not an image."""
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(IMAGE_SIGNATURES):
        return Skipped(path, Reason.CORRUPT, f"unreadable header {head[:4]!r}")
    return Skipped(path, Reason.NOT_IMAGE)


def check_files(paths: Sequence[Path], *, desc: str = "checking images") -> dict[Path, Skipped]:
    """Decode-check ``paths`` in a few threads (PIL releases the GIL while decoding)."""
    workers = min(8, os.cpu_count() or 1)
    bad: dict[Path, Skipped] = {}
    bar = tqdm(total=len(paths), desc=desc, unit="file", leave=False,
               disable=True if len(paths) < PROGRESS_MIN_FILES else None)  # None: only on a TTY
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        for path, problem in zip(paths, pool.map(check_image, paths), strict=True):
            if problem is not None:
                bad[path] = problem
            bar.update()
    return bad


def report_skipped(skipped: Sequence[Skipped], *, strict: bool, where: str) -> None:
    """Raise one ``DataError`` listing every problem (strict), else log them grouped by reason."""
    problems = [s for s in skipped if s.reason.is_problem]
    if strict and problems:
        lines = "\n".join(f"  {s}" for s in problems)
        raise DataError(f"{len(problems)} data problem(s) in {where} "
                        f"(strict; without it they would be skipped):\n{lines}")
    hidden = len(skipped) - len(problems)
    if hidden:
        log.info("ignored %d hidden file(s) in %s", hidden, where)
    if not problems:
        return
    by_reason: dict[str, list[str]] = defaultdict(list)
    for s in problems:
        by_reason[str(s.reason)].append(s.shown_path + (f" ({s.detail})" if s.detail else ""))
    parts = []
    budget = WARN_MAX_NAMED
    for reason, names in by_reason.items():
        shown = names[:max(budget, 1)]
        budget -= len(shown)
        more = f" ... and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
        parts.append(f"{reason} ({len(names)}): " + ", ".join(shown) + more)
    log.warning("skipped %d file(s) in %s:\n  %s", len(problems), where, "\n  ".join(parts))
