"""``load_splits``: from a data root (or a builtin name) to checked train/valid/test records.

Every file is decode-checked before training starts. Bad files are skipped
with one warning naming them (``strict=False``) or reported all together in one
``DataError`` (``strict=True``), so a long run never dies on its 30,000th file.

An empty class folder (or one whose files were all skipped) keeps its class
and label: labels stay aligned with folder ids, display names and CSV ClassIds,
and the model keeps an output for that class, which simply never trains. It is
reported as ``empty class folder``, so strict mode refuses it.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from training.data import fashion_mnist
from training.data.check import check_files, report_skipped
from training.data.classes import ClassIndex, read_display_names
from training.data.csvs import read_labelled_csv
from training.data.layouts import Layout, detect_layout
from training.data.records import DataError, DatasetSplits, Reason, Record, Skipped
from training.data.scan import list_class_folders, scan_split
from training.data.split import stratified_split

log = logging.getLogger(__name__)

BUILTIN = {fashion_mnist.NAME: fashion_mnist.materialise}


def resolve_root(data: str | Path) -> Path:
    """A directory as given, else a builtin dataset's folder (materialised on first use)."""
    path = Path(data).expanduser()
    if path.is_dir():
        return path.resolve()
    if str(data) in BUILTIN:
        return BUILTIN[str(data)]().resolve()
    raise DataError(f"data {str(data)!r} is neither a directory nor a builtin dataset ({', '.join(BUILTIN)})")


def _gather(layout: Layout, classes: ClassIndex) -> tuple[dict[str, list[Record]], list[Skipped]]:
    """Unchecked records per split, and what was skipped while listing them."""
    splits: dict[str, list[Record]] = {"train": [], "valid": [], "test": []}
    skipped: list[Skipped] = []
    for name, folder in (("train", layout.train_dir), ("valid", layout.valid_dir), ("test", layout.test_dir)):
        if folder is not None:
            splits[name], lost = scan_split(folder, classes.resolve)
            skipped += lost
    if layout.test_csv is not None:
        splits["test"], lost = read_labelled_csv(layout.test_csv, classes.resolve, layout.test_bases)
        skipped += lost
    return splits, skipped


def _empty_classes(train: list[Record], classes: ClassIndex, train_dir: Path) -> list[Skipped]:
    counts = Counter(r.label for r in train)
    return [Skipped(train_dir / class_id, Reason.EMPTY_CLASS, f"class {classes.names[label]!r} has no usable images")
            for label, class_id in enumerate(classes.ids) if not counts[label]]


def load_splits(
    data: str | Path,
    *,
    validation_split: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    test_csv: Path | None = None,
) -> DatasetSplits:
    """Find, decode-check and split a dataset.

    ``data`` is a directory in one of the layouts of ``training.data.layouts``
    or a builtin name (``fashion-mnist``; an existing directory of that name
    wins). ``validation_split`` (stratified,
    seeded by ``seed``) applies only when there is no validation folder.
    ``test_csv`` names a labelled table that replaces the layout's test split.
    """
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    root = resolve_root(data)
    layout = detect_layout(root, test_csv)
    folder_ids = list_class_folders(layout.train_dir)
    if not folder_ids:
        raise DataError(f"no class folders in {layout.train_dir}; expected one sub-folder of images per class")
    classes = ClassIndex.from_folders(folder_ids, read_display_names(root))
    splits, skipped = _gather(layout, classes)

    candidates = [r.path for records in splits.values() for r in records]
    bad = check_files(candidates)
    splits = {name: [r for r in records if r.path not in bad] for name, records in splits.items()}
    skipped += list(bad.values()) + _empty_classes(splits["train"], classes, layout.train_dir)
    report_skipped(skipped, strict=strict, where=str(root))
    if not splits["train"]:
        raise DataError(f"no usable training images in {layout.train_dir} ({len(skipped)} file(s) skipped)")

    train, valid = splits["train"], splits["valid"]
    if layout.valid_dir is None:
        train, valid = stratified_split(train, validation_split, seed)
    else:
        log.debug("using validation folder %s; validation_split is not applied", layout.valid_dir)
    result = DatasetSplits(classes.names, classes.ids, tuple(train), tuple(valid), tuple(splits["test"]),
                           tuple(skipped), source=str(root), layout=layout.kind)
    log.info("%d classes; %d train, %d valid, %d test images; %d skipped", result.num_classes,
             len(train), len(valid), len(result.test), len(skipped))
    return result
