"""Stratified, seeded train/validation split for datasets without a validation folder.

Each class is split on its own with a generator seeded by ``(seed, label)``, so
the split of one class never depends on the others and a given seed always
gives the same split. GTSRB training images come in tracks of ~30 frames of
one physical sign (``00000_00012_00029.png``: class, track, frame); a random
split would put near-identical frames on both sides and make validation
accuracy meaningless, so files named like that (or like the original release's
``00012_00029.ppm``: track, frame) are split by whole tracks.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from training.data.records import Record

_GTSRB_FRAMES = (
    re.compile(r"(?P<track>\d{5})_\d{5}\.ppm", re.IGNORECASE | re.ASCII),  # original: track_frame.ppm, class = folder
    re.compile(r"(?P<track>\d{5}_\d{5})_\d{5}\.png", re.IGNORECASE | re.ASCII),  # Kaggle: class_track_frame.png
)


def validation_count(n: int, fraction: float) -> int:
    """Images of a class with ``n`` images that go to validation: rounded, leaving at least one to train."""
    return max(0, min(n - 1, int(n * fraction + 0.5)))


def gtsrb_track(file_name: str) -> str | None:
    """The track a GTSRB frame file name belongs to (``00000_00012_00029.png`` -> ``00000_00012``), else None.

    Only GTSRB's own names count, so that photos named ``20210517_123456.jpg``
    are not grouped by date as if they were one track.
    """
    for pattern in _GTSRB_FRAMES:
        if match := pattern.fullmatch(file_name):
            return match["track"]
    return None


def _track(record: Record) -> str:
    return gtsrb_track(record.path.name) or str(record.path)


def _split_class(items: list[Record], fraction: float, rng: np.random.Generator) -> tuple[list[Record], list[Record]]:
    want = validation_count(len(items), fraction)
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in items:
        groups[_track(record)].append(record)
    keys = sorted(groups)
    if len(keys) == 1:  # one track (or nothing GTSRB-like): split files
        keys, groups = [str(r.path) for r in items], {str(r.path): [r] for r in items}
    valid: list[Record] = []
    order = rng.permutation(len(keys))
    for index in order:  # take a group when it brings the count closer to ``want``
        size = len(groups[keys[index]])
        if len(valid) + size / 2 <= want and len(valid) + size < len(items):
            valid.extend(groups[keys[index]])
    if want and not valid and len(keys) > 1:  # every track is large: still validate on one
        valid.extend(groups[keys[order[0]]])
    chosen = set(valid)
    return [r for r in items if r not in chosen], [r for r in items if r in chosen]


def stratified_split(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """``(train, valid)``: about ``fraction`` of every class goes to validation; order follows ``records``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction!r}")
    by_label: dict[int, list[Record]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.label, str(r.path))):
        by_label[record.label].append(record)
    valid: set[Record] = set()
    for label, items in by_label.items():
        rng = np.random.default_rng([seed, label])
        valid.update(_split_class(items, fraction, rng)[1])
    return [r for r in records if r not in valid], [r for r in records if r in valid]
