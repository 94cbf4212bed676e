"""The data layer of ``ftx train``: find, check and split a dataset, then feed it to Keras.

Two calls::

    splits = load_splits("path/to/GTSRB")        # or "fashion-mnist", the builtin demo data
    train = make_dataset(splits.train, 224, 32, shuffle=True, seed=0, cache=True,
                         augment=AugmentConfig(rotation=0.05, zoom=0.1, contrast=0.1, brightness=0.1))
    valid = make_dataset(splits.valid, 224, 32, shuffle=False, seed=0, augment=None, cache=True)

``load_splits(data, *, validation_split=0.2, seed=0, strict=False, test_csv=None) -> DatasetSplits``
    Reads one of three layouts (``layouts.py``): ``train/`` + optional
    ``valid/`` + optional ``test/`` or Kaggle GTSRB ``Test.csv``; GTSRB's
    original ``Final_Training/Images``; or plain class folders. Class order is
    numeric for integer folder names, else by name; display names come from
    ``class_names.csv``/``signnames.csv``. Every file is decode-checked first:
    bad ones are skipped and listed in ``DatasetSplits.skipped`` (or, with
    ``strict=True``, all reported in one ``DataError``).

``DatasetSplits(class_names, class_ids, train, valid, test, skipped, source, layout)``
    Records are ``Record(path, label, roi=None)``; skipped files are
    ``Skipped(path, reason: Reason, detail)``; ``summary()`` is the run
    report's ``dataset`` section: ``source``, ``layout``, ``classes``,
    ``train``, ``validation``, ``test``, ``skipped`` (counts) and
    ``skipped_by_reason``.

``AugmentConfig(flip=False, rotation=0.0, zoom=0.0, contrast=0.0, brightness=0.0)``
    Keras layer factors; the default is no augmentation. Typical values:
    rotation 0.05, zoom 0.1, contrast 0.1, brightness 0.1 (``augment.py``).

``make_dataset(records, image_size, batch_size, *, shuffle, seed, augment, cache, crop_roi=False,
drop_remainder=False) -> tf.data.Dataset``
    Batches of ``(float32 [B, S, S, 3]`` raw RGB 0-255, ``int32 [B])``. Its
    epoch order equals shuffling any ``n``-element dataset with the same seed
    (see ``pipeline.py``).

``fashion_mnist.materialise(dest=None) -> Path``
    Writes the builtin demo dataset (40 images per class + the full test set).

Importing this package does not import TensorFlow; ``make_dataset`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.data.augment import AugmentConfig
from training.data.fashion_mnist import materialise as materialise_fashion_mnist
from training.data.loader import BUILTIN, load_splits
from training.data.records import DataError, DatasetSplits, Reason, Record, Skipped

if TYPE_CHECKING:
    from training.data.pipeline import make_dataset

__all__ = [
    "BUILTIN", "AugmentConfig", "DataError", "DatasetSplits", "Reason", "Record", "Skipped",
    "load_splits", "make_dataset", "materialise_fashion_mnist",
]


def __getattr__(name: str) -> Any:
    if name == "make_dataset":  # imported on first use: it pulls in TensorFlow
        from training.data.pipeline import make_dataset

        return make_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
