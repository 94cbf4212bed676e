"""Keras predictions in full batches only, so each model's predict function is traced once.

``model.predict`` traces its step function again for every new batch shape,
and the last batch of a split is usually shorter: two traces per call, and
across the few models ``ftx run`` loads in one process TensorFlow warned of
"excessive retracing". Padding the last batch with copies of the split's own
first image keeps one shape; the padded rows' outputs are dropped.
"""

from __future__ import annotations

import sys

import numpy as np
import tensorflow as tf

from training.fit import quiet_unknown_length


def predict_dataset(model, dataset: tf.data.Dataset, count: int, batch_size: int) -> np.ndarray:
    """``model`` over the ``count`` images of a batched (images, labels) dataset, in order, as float32."""
    if count == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return _predict_here(model, dataset, count)
    images = dataset.map(lambda x, y: x).unbatch()
    filler = images.take(1).repeat(-count % batch_size)
    full = images.concatenate(filler).batch(batch_size, drop_remainder=True)
    with quiet_unknown_length():  # a progress bar on a terminal: 10,000 test images take minutes on a CPU
        outputs = model.predict(full, verbose=1 if sys.stderr.isatty() else 0)
    return np.asarray(outputs, dtype=np.float32)[:count]


def predict_array(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``model`` over an array of images, as float32, in batches of exactly ``batch_size``."""
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    padded = np.concatenate([images, np.repeat(images[:1], -count % batch_size, axis=0)])
    outputs = model.predict(padded, batch_size=batch_size, verbose=0)
    return np.asarray(outputs, dtype=np.float32)[:count]


def _predict_here(model, dataset: tf.data.Dataset, count: int) -> np.ndarray:
    """Every worker computes every row itself, in order.

    Under MultiWorkerMirroredStrategy, ``model.predict`` shards the batches
    across workers and gathers the outputs worker by worker, which is not the
    dataset's order; the features cached for the head would then sit beside
    other images' labels. Calling the model directly reads the local copy of
    its (mirrored) weights and needs no other worker.
    """
    call = tf.function(lambda images: model(images, training=False))
    outputs = [np.asarray(call(images), dtype=np.float32) for images, _ in dataset]
    return np.concatenate(outputs)[:count]
