"""Which of the three supported dataset layouts a data root uses, and where its splits are.

``split-folders``  ``DIR/train|Train/<class>/``, optional ``DIR/valid|val|validation/<class>/``,
                   optional test as ``DIR/test/<class>/`` or Kaggle GTSRB ``DIR/Test.csv``
                   (paths like ``Test/00000.png``, relative to DIR).
``gtsrb-original`` ``DIR/Final_Training/Images/000NN/*.ppm`` (+ ``GT-000NN.csv``), optional
                   ``DIR/Final_Test/Images/*.ppm`` labelled by ``GT-final_test.csv``.
``class-folders``  ``DIR/<class>/``: everything is training data.

Folder names are matched case-insensitively. An explicit ``test_csv`` replaces
whatever test split the layout has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from training.data.check import is_hidden
from training.data.records import DataError

log = logging.getLogger(__name__)

TRAIN_NAMES = ("train",)
VALID_NAMES = ("valid", "val", "validation")
TEST_NAMES = ("test",)
GTSRB_TEST_TABLE = "GT-final_test.csv"


@dataclass(frozen=True)
class Layout:
    """Where each split of a dataset lives. A test split is a folder or a table, never both."""

    kind: str
    root: Path
    train_dir: Path
    valid_dir: Path | None = None
    test_dir: Path | None = None
    test_csv: Path | None = None
    test_bases: tuple[Path, ...] = ()


def _child(root: Path, names: tuple[str, ...], *, file: bool = False) -> Path | None:
    """The first child of ``root`` whose lower-cased name is in ``names`` (in ``names`` order)."""
    children = {p.name.lower(): p for p in sorted(root.iterdir(), reverse=True)
                if not is_hidden(p.name) and (p.is_file() if file else p.is_dir())}
    return next((children[n] for n in names if n in children), None)


def _has_subfolders(folder: Path) -> bool:
    return any(p.is_dir() and not is_hidden(p.name) for p in folder.iterdir())


def _split_folders(root: Path, train_dir: Path) -> Layout:
    valid_dir = _child(root, VALID_NAMES)
    table = _child(root, tuple(f"{n}.csv" for n in TEST_NAMES), file=True)
    test_dir = _child(root, TEST_NAMES)
    if table is not None:
        return Layout("split-folders", root, train_dir, valid_dir, test_csv=table, test_bases=(root,))
    if test_dir is not None and _has_subfolders(test_dir):
        return Layout("split-folders", root, train_dir, valid_dir, test_dir=test_dir)
    if test_dir is not None:
        log.warning("%s has no class folders and there is no %s/Test.csv to label it; no test split", test_dir, root)
    return Layout("split-folders", root, train_dir, valid_dir)


def _gtsrb_original(root: Path) -> Layout:
    train_dir = root / "Final_Training" / "Images"
    images = root / "Final_Test" / "Images"
    if not images.is_dir():
        return Layout("gtsrb-original", root, train_dir)
    places = (images, images.parent, root)
    table = next((p / GTSRB_TEST_TABLE for p in places if (p / GTSRB_TEST_TABLE).is_file()), None)
    if table is None:
        log.warning("%s has no %s (the GTSRB test labels, GTSRB_Final_Test_GT.zip) in %s; no test split",
                    images, GTSRB_TEST_TABLE, ", ".join(str(p) for p in places))
        return Layout("gtsrb-original", root, train_dir)
    return Layout("gtsrb-original", root, train_dir, test_csv=table, test_bases=(images, table.parent, root))


def detect_layout(root: Path, test_csv: Path | None = None) -> Layout:
    """The layout of ``root``; ``test_csv`` (paths relative to its folder or ``root``) overrides the test split."""
    if not root.is_dir():
        raise DataError(f"data root {root} is not a directory")
    if (root / "Final_Training" / "Images").is_dir():
        layout = _gtsrb_original(root)
    elif (train_dir := _child(root, TRAIN_NAMES)) is not None:
        layout = _split_folders(root, train_dir)
    else:
        layout = Layout("class-folders", root, root)
    if test_csv is not None:
        test_csv = Path(test_csv).expanduser().resolve()
        if not test_csv.is_file():
            raise DataError(f"test_csv {test_csv} is not a file")
        bases = (test_csv.parent, root, *(b for b in layout.test_bases if b not in (test_csv.parent, root)))
        layout = Layout(layout.kind, root, layout.train_dir, layout.valid_dir, test_csv=test_csv, test_bases=bases)
    log.info("data root %s: layout %s (train %s, valid %s, test %s)", root, layout.kind, layout.train_dir,
             layout.valid_dir or "split from train", layout.test_csv or layout.test_dir or "none")
    return layout
