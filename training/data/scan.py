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
    """Names of the visible sub-folders of ``split_dir`` (unordered; see ``classes.sort_class_ids``)."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir} is not a directory")
    return [p.name for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p.name)]


def _walk_files(folder: Path, skipped: list[Skipped]) -> list[Path]:
    """Every visible file below ``folder``, sorted; hidden files and folders go to ``skipped``.

    Symbolic links are followed (datasets are often assembled from links), but
    each real folder is entered once, so a link to an ancestor cannot loop
    forever and two links to one folder do not list its files twice.
    """
    files: list[Path] = []
    visited = {os.path.realpath(folder)}
    for current, dirs, names in os.walk(folder, followlinks=True):
        here = Path(current)
        for name in [d for d in dirs if is_hidden(d)]:
            skipped.append(Skipped(here / name, Reason.HIDDEN))
            dirs.remove(name)
        dirs.sort(key=lambda d: ((here / d).is_symlink(), d))  # a real folder wins over a link to it
        for name in list(dirs):
            real = os.path.realpath(here / name)
            if real in visited:
                log.info("not entering %s again: it is %s, already listed", here / name, real)
                dirs.remove(name)
            visited.add(real)
        for name in names:
            if is_hidden(name):
                skipped.append(Skipped(here / name, Reason.HIDDEN))
            else:
                files.append(here / name)
    return sorted(files)


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
    for entry in sorted(split_dir.iterdir()):
        if is_hidden(entry.name):
            skipped.append(Skipped(entry, Reason.HIDDEN))
            continue
        if not entry.is_dir():
            loose += 1
            continue
        files = _walk_files(entry, skipped)
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
