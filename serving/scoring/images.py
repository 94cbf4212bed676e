"""What ``ftx score`` scores: image files named by folders, globs or CSV lists of paths.

Folders are walked recursively for the image types the export decodes
(``IMAGE_SUFFIXES``); a glob or a CSV takes whatever it names, and a file that
does not decode is reported later, never fatal. Paths are made absolute and
listed once each, sorted, so a run is repeatable.
"""

from __future__ import annotations

import csv
import glob
import io
import os
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
MAX_CSV_BYTES = 1 << 30  # a CSV of a billion bytes lists some ten million paths; beyond that, split it
PATH_COLUMNS = ("path", "filename", "file", "image")


class ImageListError(ValueError):
    """An IMAGES argument that names nothing usable."""


def _walk(folder: Path) -> list[str]:
    found = []
    for root, _, files in os.walk(folder, followlinks=False):
        found += [os.path.join(root, name) for name in files if name.lower().endswith(IMAGE_SUFFIXES)]
    return found


def _from_csv(path: Path) -> list[str]:
    """The paths of a CSV: its ``path`` (or filename/file/image) column if it has a header naming one, else its
    first column; relative paths are relative to the CSV's folder; URLs (gs://...) are kept as they are."""
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise ImageListError(f"{path} is {size} bytes; a CSV list of images may hold at most {MAX_CSV_BYTES}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImageListError(f"{path} is not UTF-8 text: {error}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise ImageListError(f"{path} lists no paths")
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(name) for name in PATH_COLUMNS if name in header), None)
    body = rows[1:] if column is not None else rows
    column = column or 0
    if not body:
        raise ImageListError(f"{path} lists no paths, only its header")
    paths = []
    for number, row in enumerate(body, start=2 if rows is not body else 1):
        if column >= len(row) or not row[column].strip():
            raise ImageListError(f"{path}, line {number}: no path in column {column + 1}")
        value = row[column].strip()
        paths.append(value if "://" in value else str((path.parent / value).absolute()))
    return paths


def list_images(arguments: list[str]) -> list[str]:
    """Every image path the arguments name, absolute, once each, sorted; ImageListError for one naming none."""
    if not arguments:
        raise ImageListError("name at least one folder, glob or CSV list of images")
    paths: set[str] = set()
    for argument in arguments:
        path = Path(argument).expanduser()
        if "://" in argument:
            raise ImageListError(f"{argument}: list remote images in a CSV file; folders and globs are local")
        if path.is_dir():
            found = _walk(path)
            if not found:
                raise ImageListError(f"{path} holds no {'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files")
        elif path.is_file() and path.suffix.lower() == ".csv":
            found = _from_csv(path)
        elif path.is_file():
            found = [str(path)]
        elif glob.has_magic(argument):
            found = [p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p)]
            if not found:
                raise ImageListError(f"{argument}: the glob matches no files")
        else:
            raise ImageListError(f"{argument}: no such folder, file or CSV list")
        paths.update(p if "://" in p else str(Path(p).absolute()) for p in found)
    return sorted(paths)
