"""The tf.data inputs each training phase and evaluation needs (built on ``training.data``).

A cached phase gets the frozen backbone's pooled features, computed once per
run and shuffled with the same seed as the image pipeline, so cached and
uncached feature extraction see batches in the same order.
"""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from training.config import TrainConfig
from training.data import make_dataset
from training.fit import PhaseData
from training.keras_predict import predict_dataset
from training.model import Classifier

log = logging.getLogger(__name__)

MEMORY_CACHE_LIMIT_BYTES = 2 << 30  # decoded uint8 images held in RAM; beyond this, decode every epoch


def _cache_choice(count: int, image_size: int) -> bool:
    needed = count * image_size * image_size * 3
    if needed > MEMORY_CACHE_LIMIT_BYTES:
        log.info("not caching %d decoded images in memory (%.1f GB > %.1f GB): decoding every epoch",
                 count, needed / 1e9, MEMORY_CACHE_LIMIT_BYTES / 1e9)
        return False
    return True


def split_dataset(records, image_size: int, batch_size: int, crop_roi: bool = False) -> tf.data.Dataset:
    """Unshuffled, unaugmented (images, labels) batches in record order."""
    return make_dataset(records, image_size, batch_size, shuffle=False, seed=0, augment=None, cache=False,
                        crop_roi=crop_roi)


def record_images(records, image_size: int, crop_roi: bool = False) -> np.ndarray:
    """Decode ``records`` to uint8 ``[N, H, W, 3]`` for the prediction grids."""
    batches = [x.numpy() for x, _ in split_dataset(records, image_size, 64, crop_roi)]
    return np.clip(np.rint(np.concatenate(batches)), 0, 255).astype(np.uint8)


def _feature_dataset(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int | None) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices((features, labels.astype(np.int32)))
    if seed is not None:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def phase_data(classifier: Classifier, splits, config: TrainConfig, use_feature_cache: bool,
               cache: dict[str, PhaseData]) -> PhaseData:
    """Image batches for phases that run the backbone, cached features for head-only phases."""
    image_size = config.image_size  # resolved by train()
    if not use_feature_cache:
        train = make_dataset(splits.train, image_size, config.batch_size, shuffle=True, seed=config.seed,
                             augment=config.augment if config.augment.enabled else None,
                             cache=_cache_choice(len(splits.train), image_size), crop_roi=config.roi_crop)
        valid = (make_dataset(splits.valid, image_size, config.batch_size, shuffle=False, seed=0, augment=None,
                              cache=_cache_choice(len(splits.valid), image_size), crop_roi=config.roi_crop)
                 if splits.valid else None)
        return PhaseData(train=train, valid=valid, num_train=len(splits.train), batch_size=config.batch_size)
    if "features" not in cache:
        log.info("computing backbone features once for %d training images", len(splits.train))
        feature_sets = {}
        for name, records in (("train", splits.train), ("valid", splits.valid or [])):
            if records:
                features = predict_dataset(classifier.features, split_dataset(records, image_size, config.batch_size,
                                                                              config.roi_crop),
                                           len(records), config.batch_size)
                feature_sets[name] = (features, np.array([r.label for r in records]))
        train_features, train_labels = feature_sets["train"]
        valid = (_feature_dataset(*feature_sets["valid"], config.batch_size, None) if "valid" in feature_sets else None)
        cache["features"] = PhaseData(
            train=_feature_dataset(train_features, train_labels, config.batch_size, config.seed),
            valid=valid, num_train=len(train_labels), batch_size=config.batch_size)
    return cache["features"]
