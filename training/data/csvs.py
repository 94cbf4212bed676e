"""Label and ROI tables: GTSRB's ``Test.csv`` (comma) and ``GT-*.csv`` (semicolon).

Both GTSRB releases use the same column names with different separators and
path columns (``Path`` relative to the dataset root, ``Filename`` relative to
the images folder), so one reader sniffs the separator and accepts either.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from training.data.records import DataError, Reason, Record, Roi, Skipped

log = logging.getLogger(__name__)

PATH_COLUMNS = ("Path", "Filename")
ROI_COLUMNS = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a ``,`` or ``;`` separated table with a header line, keys and values stripped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read table {path}: {error}") from error
    lines = text.splitlines()
    if not lines:
        raise DataError(f"table {path} is empty; expected a header line")
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    rows = []
    try:
        for row in csv.DictReader(lines, delimiter=delimiter):
            rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None})
    except csv.Error as error:
        raise DataError(f"cannot parse table {path}: {error}") from error
    return rows


def column(rows: list[dict[str, str]], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` present in the table's header, else None."""
    header = rows[0].keys() if rows else ()
    return next((name for name in candidates if name in header), None)


def require_columns(table: Path, rows: list[dict[str, str]], required: Sequence[str],
                    one_of: Sequence[str]) -> str:
    """The first of ``one_of`` in the table's header, which must also hold every ``required`` column.

    Otherwise one ``DataError`` names the columns needed and the columns found.
    """
    chosen = column(rows, one_of)
    if chosen is None or not all(name in rows[0] for name in required):
        needs = f"columns {', '.join(required)} and one of {list(one_of)}" if required else f"one of {list(one_of)}"
        found = list(rows[0]) if rows else []
        raise DataError(f"{table} needs {needs}; found columns {found}")
    return chosen


def parse_roi(row: dict[str, str]) -> Roi | None:
    """``(x1, y1, x2, y2)`` when all four Roi columns hold integers, else None."""
    try:
        x1, y1, x2, y2 = (int(row[name]) for name in ROI_COLUMNS)
    except (KeyError, ValueError):
        return None
    return (x1, y1, x2, y2)


def _locate(value: str, bases: Sequence[Path]) -> Path:
    """The first existing ``base / value``; the first candidate when none exists (reported missing)."""
    relative = Path(value.replace("\\", "/"))
    if relative.is_absolute():
        return relative
    candidates = [base / relative for base in bases]
    return next((c for c in candidates if c.is_file()), candidates[0])


def read_labelled_csv(
    table: Path, resolve: Callable[[str], int | None], bases: Sequence[Path]
) -> tuple[list[Record], list[Skipped]]:
    """Records for every row of a labelled table; rows naming missing files or unknown classes are skipped.

    ``resolve`` maps a ClassId cell to a label (``ClassIndex.resolve``).
    ``bases`` are the folders a row's path is tried against, in order (the
    table's own folder first for ``Test.csv``; the images folder for GTSRB's
    ``GT-final_test.csv``).
    """
    rows = read_rows(table)
    path_column = require_columns(table, rows, ["ClassId"], PATH_COLUMNS)
    records: list[Record] = []
    skipped: list[Skipped] = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        path = _locate(row[path_column], bases)
        label = resolve(row["ClassId"])
        if label is None:
            detail = f"ClassId {row['ClassId']!r} on line {number} of {table.name}"
            skipped.append(Skipped(path, Reason.UNKNOWN_CLASS, detail))
        elif not path.is_file():
            skipped.append(Skipped(path, Reason.MISSING, f"named on line {number} of {table.name}"))
        else:
            records.append(Record(path, label, parse_roi(row)))
    log.debug("%s: %d labelled rows, %d skipped", table, len(records), len(skipped))
    return records, skipped


def read_roi_table(table: Path) -> dict[str, Roi | None]:
    """``{Filename: roi}`` from a GTSRB ``GT-000NN.csv`` that sits inside a class folder."""
    rows = read_rows(table)
    path_column = require_columns(table, rows, [], PATH_COLUMNS)
    return {Path(row[path_column].replace("\\", "/")).name: parse_roi(row) for row in rows}
