"""The values the data layer hands to training: records, skipped files, splits.

Kept free of TensorFlow so that scanning a dataset, writing a run report or
reading class names never pays for importing it.
"""

from __future__ import annotations

import enum
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

Roi = tuple[int, int, int, int]
"""A region of interest ``(x1, y1, x2, y2)`` in pixels, ``x2``/``y2`` exclusive (slice bounds)."""


class DataError(ValueError):
    """A dataset cannot be used as given; the message names every offending path or value."""


class Reason(enum.StrEnum):
    """Why a file (or class folder) was left out. The run report counts these."""

    HIDDEN = "hidden file"
    EMPTY_FILE = "empty file"
    UNREADABLE = "unreadable file"
    NOT_IMAGE = "not an image"
    CORRUPT = "corrupt image"
    MISSING = "missing file"
    UNKNOWN_CLASS = "unknown class"
    EMPTY_CLASS = "empty class folder"
    BAD_TABLE = "bad label table"
    LINK_OUTSIDE = "link out of its class folder"
    LINK_CYCLE = "link cycle"
    REACHED_TWICE = "reached twice"
    BAD_NAME = "name not UTF-8"

    @property
    def is_problem(self) -> bool:
        """Hidden files (``.DS_Store``, ``__MACOSX``) are never data, so strict mode lets them pass."""
        return self is not Reason.HIDDEN


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled image: ``label`` indexes ``DatasetSplits.class_names``."""

    path: Path
    label: int
    roi: Roi | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file left out of every split, and why (``detail`` carries the decoder's message)."""

    path: Path
    reason: Reason
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.shown_path}: {self.reason}" + (f" ({self.detail})" if self.detail else "")

    @property
    def shown_path(self) -> str:
        return shown_name(self.path)


def shown_name(path: Path) -> str:
    """A path that printing and JSON cannot fail on: bytes that are not UTF-8 are shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class DatasetSplits:
    """Everything ``ftx train`` needs to know about its data, already decode-checked.

    ``class_ids`` are the folder names in label order; ``class_names`` are the
    display names (from ``class_names.csv``/``signnames.csv``) or the ids when
    there is no such file. ``source`` is the dataset root that was read and
    ``layout`` how it was read (``split-folders``, ``gtsrb-original``,
    ``class-folders``).
    """

    class_names: tuple[str, ...]
    class_ids: tuple[str, ...]
    train: tuple[Record, ...]
    valid: tuple[Record, ...]
    test: tuple[Record, ...]
    skipped: tuple[Skipped, ...]
    source: str
    layout: str

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    def skipped_counts(self) -> dict[str, int]:
        """``{reason: count}`` for the run report."""
        return dict(Counter(str(s.reason) for s in self.skipped))

    def summary(self) -> dict[str, object]:
        """A JSON-ready description of the splits (counts, not file lists): the run report's ``dataset``.

        Keys: ``source`` (the dataset root read), ``layout`` (how it was read),
        ``classes`` (number of classes), ``train``, ``validation`` and ``test``
        (images per split), ``skipped`` (files and folders left out) and
        ``skipped_by_reason`` (``{reason: count}``, see ``Reason``).
        """
        return {
            "source": self.source,
            "layout": self.layout,
            "classes": self.num_classes,
            "train": len(self.train),
            "validation": len(self.valid),
            "test": len(self.test),
            "skipped": len(self.skipped),
            "skipped_by_reason": self.skipped_counts(),
        }
