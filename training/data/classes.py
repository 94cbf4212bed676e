"""Class order and names: the label of a class is its index in a fixed, explicit order.

Integer folder names sort by value ('2' before '10'), because GTSRB-style
datasets use the number as the class id and a lexicographic order would give
folder '10' label 2. Any other names sort by code point, as Keras'
``image_dataset_from_directory`` does. Note that Keras sorts integer names
lexicographically, so a model trained with Keras' loader on folders '0'..'42'
has a different label order from ours.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from training.data.csvs import read_rows, require_columns
from training.data.records import DataError

log = logging.getLogger(__name__)

NAME_FILES = ("class_names.csv", "signnames.csv")
NAME_COLUMNS = ("Name", "SignName")
_INTEGER = re.compile(r"[0-9]+")


def is_integer_name(name: str) -> bool:
    return bool(_INTEGER.fullmatch(name.strip()))


def sort_class_ids(ids: Iterable[str]) -> list[str]:
    """Numeric order when every id is an integer, else code-point order."""
    ids = list(ids)
    if ids and all(is_integer_name(i) for i in ids):
        by_value: dict[int, str] = {}
        for class_id in ids:
            other = by_value.setdefault(int(class_id), class_id)
            if other != class_id:
                raise DataError(f"class folders {other!r} and {class_id!r} name the same class {int(class_id)}")
        return sorted(ids, key=int)
    return sorted(ids)


@dataclass(frozen=True)
class ClassIndex:
    """Folder ids and display names in label order, and the lookup from a CSV ClassId to a label."""

    ids: tuple[str, ...]
    names: tuple[str, ...]

    @functools.cached_property
    def numeric(self) -> bool:
        return bool(self.ids) and all(is_integer_name(i) for i in self.ids)

    @functools.cached_property
    def _lookup(self) -> dict[str, int]:
        table: dict[str, int] = {}
        for label, name in enumerate(self.names):  # display names first, so ids win a clash
            table.setdefault(name, label)
        table.update({class_id: label for label, class_id in enumerate(self.ids)})
        return table

    def resolve(self, value: str) -> int | None:
        """The label a CSV ClassId (or a folder name) means, or None for an unknown class.

        With integer folders, ``7``, ``07`` and ``00007`` all mean the folder whose
        number is 7; otherwise the value must equal a folder id or a display name.
        """
        value = value.strip()
        if value in self.ids:
            return self.ids.index(value)
        if self.numeric and is_integer_name(value):
            number = int(value)
            return next((label for label, i in enumerate(self.ids) if int(i) == number), None)
        return self._lookup.get(value)

    @classmethod
    def from_folders(cls, folder_ids: Iterable[str], display_names: Mapping[str, str] | None = None) -> ClassIndex:
        """Order ``folder_ids`` and attach display names keyed by folder id (or its integer value)."""
        ids = tuple(sort_class_ids(folder_ids))
        bare = cls(ids, ids)
        names = list(ids)
        named: set[int] = set()
        for key, name in (display_names or {}).items():
            label = bare.resolve(key)
            if label is None:
                log.warning("display name %r for ClassId %r matches no class folder; ignored", name, key)
            elif name:
                names[label] = name
                named.add(label)
        missing = [class_id for label, class_id in enumerate(ids) if label not in named]
        if display_names and missing:
            log.warning("no display name for class folders %s; using the folder names", missing)
        _refuse_duplicate_names(ids, names)
        return cls(ids, tuple(names))


def _refuse_duplicate_names(ids: tuple[str, ...], names: list[str]) -> None:
    """Evaluation reports per display name, so two classes sharing one would be merged there."""
    folders: dict[str, list[str]] = {}
    for class_id, name in zip(ids, names, strict=True):
        folders.setdefault(name, []).append(class_id)
    clashes = [f"{name!r} for class folders {same}" for name, same in folders.items() if len(same) > 1]
    if clashes:
        raise DataError(f"display names ({' or '.join(NAME_FILES)}) must be unique; found "
                        + "; ".join(clashes))


def read_display_names(root: Path) -> dict[str, str]:
    """``{ClassId: name}`` from ``class_names.csv`` or ``signnames.csv`` in ``root``; empty when neither exists."""
    table = next((root / name for name in NAME_FILES if (root / name).is_file()), None)
    if table is None:
        return {}
    rows = read_rows(table)
    name_column = require_columns(table, rows, ["ClassId"], NAME_COLUMNS)
    log.info("display names from %s", table)
    return {row["ClassId"]: row[name_column] for row in rows}
