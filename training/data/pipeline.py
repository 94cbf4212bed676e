"""The tf.data pipeline: records -> batches of raw RGB pixels and integer labels.

Order contract: the epoch order is exactly that of
``from_tensor_slices(range(n)).shuffle(n, seed=seed, reshuffle_each_iteration=True)``,
so any other pipeline over ``n`` elements shuffled with the same seed (features,
sample weights, a second model) sees the records in the same order, epoch by
epoch. Without a cache the shuffle runs on (path, label) pairs before any
decoding, so the shuffle buffer holds strings, not images. With a cache the
decoded images are cached in record order and then shuffled with the same
buffer size and seed, which gives the same permutation (a shuffle's order
depends only on the element count and the seed) and keeps every epoch
reshuffled; the shuffle buffer then refers to all ``n`` decoded images, which
the cache holds anyway.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from training.data.augment import AugmentConfig, build_augmenter
from training.data.decode import NO_ROI, load_example
from training.data.records import Record

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE


def _slices(records: Sequence[Record]) -> tf.data.Dataset:
    paths = tf.constant([str(r.path) for r in records], dtype=tf.string, shape=[len(records)])
    labels = tf.constant([r.label for r in records], dtype=tf.int32, shape=[len(records)])
    rois = tf.constant([r.roi or NO_ROI for r in records], dtype=tf.int32, shape=[len(records), 4])
    return tf.data.Dataset.from_tensor_slices((paths, labels, rois))


def _cache_file(prefix: str, records: Sequence[Record], image_size: int, crop_roi: bool) -> str:
    """``prefix`` plus a digest of what the cache holds, so a stale cache is never read back."""
    digest = hashlib.sha256(f"{image_size} {crop_roi}\n".encode())
    for r in records:
        digest.update(f"{r.path}\0{r.label}\0{r.roi}\n".encode())
    path = Path(f"{prefix}-{digest.hexdigest()[:16]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


def _check_arguments(image_size: int, batch_size: int, cache: bool | str) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(cache, bool | str):
        raise ValueError(f"cache must be True, False or a file path prefix, got {cache!r}")


def make_dataset(
    records: Sequence[Record],
    image_size: int,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augment: AugmentConfig | None,
    cache: bool | str,
    crop_roi: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches ``(float32 [B, S, S, 3] RGB 0-255, int32 [B])`` of ``records``.

    ``cache``: False, True (memory) or a path prefix for a file cache; the
    file name gets a digest of the records, image size and ``crop_roi``, so
    pipelines never read each other's cache (files changed on disk under the
    same path are not noticed).
    ``augment`` applies only when given (pass None for validation and test).
    ``crop_roi`` crops to each record's ROI box before resizing (GTSRB).
    A file that fails to decode mid-run is dropped with a logged warning
    instead of ending the run; ``load_splits`` has decode-checked every file.
    """
    _check_arguments(image_size, batch_size, cache)
    count = len(records)
    load = functools.partial(load_example, image_size=image_size, crop_roi=crop_roi)
    dataset = _slices(records)
    if cache is False:
        if shuffle:
            dataset = dataset.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE).ignore_errors(log_warning=True)
    else:
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE).ignore_errors(log_warning=True)
        dataset = dataset.cache("" if cache is True else _cache_file(cache, records, image_size, crop_roi))
        if shuffle:
            log.debug("shuffling %d cached images of %dx%d (%.0f MB held)", count, image_size, image_size,
                      count * image_size * image_size * 3 / 1e6)
            dataset = dataset.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32), labels), num_parallel_calls=AUTOTUNE)
    if augment is not None and augment.enabled:
        augmenter = build_augmenter(augment, seed)
        dataset = dataset.map(lambda images, labels: (augmenter(images), labels), num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
