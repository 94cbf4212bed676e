"""Folder-per-class scanning (the ``image_dataset_from_directory`` convention).

A split folder holds one sub-folder per class; every file below a class folder
(at any depth) is a candidate image of that class. Files directly in the split
folder belong to no class and are ignored. A GTSRB ``GT-*.csv`` inside a class
folder is read for its ROI boxes instead of being taken for an image (one that
cannot be read is skipped as a ``bad label table``). Nothing here decodes
images: ``check.check_files`` does that once for all splits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from training.data.check import is_hidden
from training.data.csvs import read_roi_table
from training.data.records import DataError, Reason, Record, Roi, Skipped

log = logging.getLogger(__name__)


def is_roi_table(name: str) -> bool:
    return name.startswith("GT-") and name.lower().endswith(".csv")


def list_class_folders(split_dir: Path) -> list[str]:
    """Names of the visible sub-folders of ``split_dir`` (unordered; see ``classes.sort_class_ids``); a name that
    is not UTF-8 names no class (``scan_split`` reports its files)."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is not a directory")
    return [p.name for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p.name) and is_utf8(p.name)]


def is_utf8(name: str) -> bool:
    """False for a name whose bytes are not UTF-8 (Python holds them as surrogate escapes, TensorFlow cannot)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk_files(folder: Path, skipped: list[Skipped], seen: dict[str, Path],
                class_roots: tuple[Path, ...] = ()) -> list[Path]:
    """Every visible file below ``folder``, sorted; what is left out goes to ``skipped`` with its reason.

    Symbolic links are followed only while they stay inside the class folder:
    a link out of it (to a parent, or into another class) would give that
    folder's images this class's label. A link to a folder already being
    walked is a cycle; a second way to a folder or file already listed
    (``seen``: real path -> the path it was listed under, for the whole split)
    is reported as reached twice instead of listing it again. A file link may
    lead out of the split (datasets assembled from links), but not into another
    class folder of it (``class_roots``: the split's class folders, resolved).
    """
    files: list[Path] = []
    root = Path(os.path.realpath(folder))
    visited = {str(root)}
    for current, dirs, names in os.walk(folder, followlinks=True):
        here = Path(current)
        real_here = Path(os.path.realpath(here))
        for name in [d for d in dirs if is_hidden(d) or not is_utf8(d)]:
            skipped.append(Skipped(here / name, Reason.HIDDEN if is_hidden(name) else Reason.BAD_NAME,
                                   "" if is_hidden(name) else "a folder; rename it to read its files"))
            dirs.remove(name)
        dirs.sort(key=lambda d: ((here / d).is_symlink(), d))  # a real folder wins over a link to it
        for name in list(dirs):
            real = Path(os.path.realpath(here / name))
            problem = None
            if not real.is_relative_to(root):
                problem = Skipped(here / name, Reason.LINK_OUTSIDE, f"it leads to {real}")
            elif real == real_here or real_here.is_relative_to(real):
                problem = Skipped(here / name, Reason.LINK_CYCLE, f"it leads back to {real}")
            elif str(real) in visited:
                problem = Skipped(here / name, Reason.REACHED_TWICE, f"the folder {real} is listed already")
            if problem:
                skipped.append(problem)
                dirs.remove(name)
            else:
                visited.add(str(real))
        for name in sorted(names, key=lambda n: ((here / n).is_symlink(), n)):  # a real file wins over a link
            path = here / name
            if is_hidden(name):
                skipped.append(Skipped(path, Reason.HIDDEN))
                continue
            if not is_utf8(name):
                skipped.append(Skipped(path, Reason.BAD_NAME, "rename it to read it"))
                continue
            real_file = os.path.realpath(path)
            owner = _other_class(Path(real_file), root, class_roots)
            if owner is not None:
                skipped.append(Skipped(path, Reason.LINK_OUTSIDE, f"it is {real_file}, an image of the class folder "
                                                                  f"{owner.name}"))
            elif real_file in seen:
                skipped.append(Skipped(path, Reason.REACHED_TWICE, f"the same file as {seen[real_file]}"))
            else:
                seen[real_file] = path
                files.append(path)
    return sorted(files)


def _other_class(real: Path, own: Path, class_roots: tuple[Path, ...]) -> Path | None:
    """The class folder other than ``own`` that holds ``real``, if any."""
    if real.is_relative_to(own):
        return None
    return next((root for root in class_roots if root != own and real.is_relative_to(root)), None)


def _roi_tables(folder: Path, files: list[Path], skipped: list[Skipped]) -> dict[str, Roi | None]:
    """ROIs by file name from the class folder's ``GT-*.csv``; rows naming absent files are skipped.

    A table that cannot be read is skipped as a whole: its images keep no ROI.
    """
    rois: dict[str, Roi | None] = {}
    present = {f.name for f in files}
    for table in (f for f in files if f.parent == folder and is_roi_table(f.name)):
        try:
            table_rois = read_roi_table(table)
        except DataError as error:
            skipped.append(Skipped(table, Reason.BAD_TABLE, str(error).replace(str(table), table.name)))
            continue
        for name, roi in table_rois.items():
            if name in present:
                rois[name] = roi
            else:
                skipped.append(Skipped(folder / name, Reason.MISSING, f"named in {table.name}"))
    return rois


def scan_split(split_dir: Path, resolve: Callable[[str], int | None]) -> tuple[list[Record], list[Skipped]]:
    """Unchecked records of one split folder, labelled by ``resolve(class folder name)``.

    Files in a folder that names no known class are skipped as ``unknown class``
    (a validation folder with a class the training folder lacks).
    """
    records: list[Record] = []
    skipped: list[Skipped] = []
    loose = 0
    seen: dict[str, Path] = {}  # real path of every file listed so far in this split
    entries = sorted(split_dir.iterdir())
    class_roots = tuple(Path(os.path.realpath(e)) for e in entries if e.is_dir() and not is_hidden(e.name))
    for entry in entries:
        if is_hidden(entry.name):
            skipped.append(Skipped(entry, Reason.HIDDEN))
            continue
        if not entry.is_dir():
            loose += 1
            continue
        if not is_utf8(entry.name):
            skipped.append(Skipped(entry, Reason.BAD_NAME, "a class folder; rename it to train on it"))
            continue
        files = _walk_files(entry, skipped, seen, class_roots)
        rois = _roi_tables(entry, files, skipped)
        images = [f for f in files if not (f.parent == entry and is_roi_table(f.name))]
        label = resolve(entry.name)
        if label is None:
            skipped.extend(Skipped(f, Reason.UNKNOWN_CLASS, f"folder {entry.name!r} is not a training class")
                           for f in images)
            continue
        records.extend(Record(f, label, rois.get(f.name)) for f in images)
    if loose:
        log.info("ignored %d file(s) directly in %s (not inside a class folder)", loose, split_dir)
    return records, skipped
