"""The embedded default dataset: a small Fashion-MNIST in the traffic-sign study's layout.

``materialise()`` writes 40 images per class (28 train + 12 valid, drawn with a
fixed seed from the 60,000 training images) and all 10,000 test images with a
Kaggle-GTSRB ``Test.csv``, so the demo exercises exactly the code paths a real
GTSRB download does. Images stay 28x28 grey PNGs; the pipeline makes them RGB.

The IDX files come from, in order: the Debian package's install folder, the
ftx cache, ``apt-get download dataset-fashion-mnist`` into the cache (no root
needed, works offline as long as the Debian mirror is reachable), and last
Keras' downloader for machines that are online but not Debian.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.atomic import staged_directory
from training.data.debian import fetch_package_folder
from training.data.idx import read_idx_images, read_idx_labels
from training.data.records import DataError
from training.home import cache_dir, ftx_home

log = logging.getLogger(__name__)

NAME = "fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
TRAIN_PER_CLASS = 28
VALID_PER_CLASS = 12
SAMPLE_SEED = 0
LAYOUT_VERSION = 1
MANIFEST = "ftx-dataset.json"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class FashionArrays:
    """The full dataset as arrays: images ``uint8 [n, 28, 28]``, labels ``uint8 [n]``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def _has_idx(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_FILES)


def idx_folder() -> Path:
    """A folder holding the four IDX files, fetching the Debian package into the cache if needed."""
    if _has_idx(DEBIAN_DIR):
        return DEBIAN_DIR
    cached = cache_dir("datasets") / "fashion-mnist-idx"
    if _has_idx(cached):
        return cached
    log.info("fetching Fashion-MNIST: apt-get download %s into %s", DEBIAN_PACKAGE, cached)
    try:
        fetch_package_folder(DEBIAN_PACKAGE, str(DEBIAN_DIR).lstrip("/"), cached, ftx_home() / "apt")
    except OSError:
        if not _has_idx(cached):  # else another process fetched it first
            raise
    if not _has_idx(cached):
        raise DataError(f"package {DEBIAN_PACKAGE} did not provide {list(IDX_FILES)} in {cached}")
    return cached


def _check(arrays: FashionArrays) -> FashionArrays:
    for split, images, labels, count in (("train", arrays.train_images, arrays.train_labels, 60_000),
                                          ("test", arrays.test_images, arrays.test_labels, 10_000)):
        if images.shape != (count, 28, 28) or labels.shape != (count,) or labels.max(initial=0) > 9:
            raise DataError(f"Fashion-MNIST {split} from {arrays.source}: images {images.shape}, labels "
                            f"{labels.shape} with max {labels.max(initial=0)}; expected ({count}, 28, 28), "
                            f"({count},), labels 0-9")
    return arrays


def load_arrays() -> FashionArrays:
    """The 70,000 images and labels, from IDX files if they can be had, else Keras' downloader."""
    try:
        folder = idx_folder()
    except DataError as error:
        log.warning("no Fashion-MNIST IDX files (%s); trying keras.datasets.fashion_mnist", error)
        try:
            import keras

            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
        except Exception as keras_error:  # any download failure: report both ways that failed
            raise DataError(f"cannot get Fashion-MNIST: Debian package: {error}; Keras download: "
                            f"{keras_error}") from keras_error
        return _check(FashionArrays(x_train, y_train, x_test, y_test, source="keras.datasets.fashion_mnist"))
    log.info("reading Fashion-MNIST IDX files from %s", folder)
    return _check(FashionArrays(read_idx_images(folder / IDX_FILES[0]), read_idx_labels(folder / IDX_FILES[1]),
                                read_idx_images(folder / IDX_FILES[2]), read_idx_labels(folder / IDX_FILES[3]),
                                source=str(folder)))


def sample_indices(labels: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{class: (train indices, valid indices)}``, 28 + 12 per class, reproducible for ``SAMPLE_SEED``."""
    rng = np.random.default_rng(SAMPLE_SEED)
    picks = {}
    for label in range(len(CLASS_NAMES)):
        chosen = rng.choice(np.flatnonzero(labels == label), TRAIN_PER_CLASS + VALID_PER_CLASS, replace=False)
        picks[label] = (np.sort(chosen[:TRAIN_PER_CLASS]), np.sort(chosen[TRAIN_PER_CLASS:]))
    return picks


def _write(stage: Path, arrays: FashionArrays) -> dict[str, int]:
    counts = {"train": 0, "valid": 0, "test": len(arrays.test_labels)}
    for label, (train, valid) in sample_indices(arrays.train_labels).items():
        for split, indices in (("train", train), ("valid", valid)):
            folder = stage / split / str(label)
            folder.mkdir(parents=True)
            for index in indices:
                Image.fromarray(arrays.train_images[index]).save(folder / f"{index:05d}.png")
            counts[split] += len(indices)
    log.info("writing %d Fashion-MNIST test images", counts["test"])
    (stage / "Test").mkdir()
    rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
    for index, (image, label) in enumerate(zip(arrays.test_images, arrays.test_labels, strict=True)):
        Image.fromarray(image).save(stage / "Test" / f"{index:05d}.png")
        rows.append(f"28,28,0,0,28,28,{label},Test/{index:05d}.png")
    (stage / "Test.csv").write_text("\n".join(rows) + "\n")
    names = ["ClassId,Name"] + [f"{i},{name}" for i, name in enumerate(CLASS_NAMES)]
    (stage / "class_names.csv").write_text("\n".join(names) + "\n")
    return counts


def _is_complete(dest: Path) -> bool:
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("name") == NAME and manifest.get("layout_version") == LAYOUT_VERSION


def materialise(dest: Path | None = None) -> Path:
    """The small Fashion-MNIST folder at ``dest`` (default: the ftx cache), writing it once.

    The folder appears whole or not at all (it is written beside ``dest`` and
    renamed); a complete one, marked by its ``ftx-dataset.json``, is reused.
    """
    dest = Path(dest) if dest is not None else cache_dir("datasets") / "fashion-mnist-small"
    if _is_complete(dest):
        log.info("using Fashion-MNIST at %s", dest)
        return dest
    if dest.exists():
        raise DataError(f"{dest} exists but is not a complete ftx Fashion-MNIST folder (no valid {MANIFEST}); "
                        "remove it or choose another destination")
    arrays = load_arrays()
    log.info("materialising Fashion-MNIST (%d train + %d valid per class, all test) at %s",
             TRAIN_PER_CLASS, VALID_PER_CLASS, dest)
    try:
        with staged_directory(dest) as stage:
            counts = _write(stage, arrays)
            manifest = {"name": NAME, "layout_version": LAYOUT_VERSION, "source": arrays.source,
                        "sample_seed": SAMPLE_SEED, "counts": counts, "class_names": list(CLASS_NAMES)}
            (stage / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except OSError:
        if _is_complete(dest):  # another process finished first: its copy is identical
            return dest
        raise
    log.info("Fashion-MNIST ready at %s: %s", dest, counts)
    return dest
