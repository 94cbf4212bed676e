"""Device placement choices: tf.distribute strategy and mixed precision."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

import keras
import tensorflow as tf

from training.config import ConfigError

log = logging.getLogger(__name__)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``auto``: mirrored on several GPUs, else the default; ``multi-worker`` reads ``TF_CONFIG``."""
    gpus = tf.config.list_physical_devices("GPU")
    if name == "none" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        strategy = tf.distribute.MirroredStrategy()
        log.info("mirrored strategy over %d replica(s)", strategy.num_replicas_in_sync)
        return strategy
    if name == "multi-worker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ConfigError("--distribute multi-worker needs TF_CONFIG (cluster and task) in the environment")
        try:
            json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from None
        return _MultiWorkerStrategy()
    raise ConfigError(f"unknown distribution strategy {name!r}")


class _MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy with the two ``reduce`` calls Keras 3's ``fit`` makes working.

    With more than one worker, Keras 3 (3.15, and its main branch today)
    fails in ``fit`` (keras-team/keras#20585, open):
    - it reduces the first ``(images, labels)`` batch, a tuple, to learn the
      input shapes, and the collective reduce takes one value only
      ("Attempt to convert a value (PerReplica ...)"): each item is reduced in
      turn here, the same all-reduces in the same order on every worker;
    - it reduces every step's scalar logs with ``axis=0``, which a scalar does
      not have ("Invalid reduction dimension 0"): a scalar is reduced across
      replicas only, which is what the mean of per-replica scalars means.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, tuple | list | dict):
            return tf.nest.map_structure(lambda item: self.reduce(reduce_op, item, axis), value)
        if axis is not None and _rank(value) == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def _rank(value) -> int | None:
    first = value.values[0] if isinstance(value, tf.distribute.DistributedValues) else value
    return getattr(getattr(first, "shape", None), "rank", None)


def _multi_worker_resolver(strategy: tf.distribute.Strategy):
    """The cluster resolver of a multi-worker strategy; None for any other strategy."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    return getattr(strategy, "cluster_resolver", None)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The one worker that writes the run directory (the only one outside multi-worker training)."""
    resolver = _multi_worker_resolver(strategy)
    if resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type in (None, "chief") or (not has_chief and task_type == "worker" and task_id == 0)


def worker_task(strategy: tf.distribute.Strategy) -> str | None:
    """``"worker 1 of 2"`` in multi-worker training (the name logs use), else None."""
    resolver = _multi_worker_resolver(strategy)
    if resolver is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    total = sum(len(tasks) for name, tasks in cluster.items() if name in ("chief", "worker"))
    return f"{resolver.task_type} {resolver.task_id} of {total}"


@contextlib.contextmanager
def mixed_precision_policy(enabled: bool) -> Iterator[str]:
    """float16 compute on GPU when asked; on CPU it would only be slower, so it is refused with a warning."""
    previous = keras.config.dtype_policy()
    policy = "float32"
    if enabled and tf.config.list_physical_devices("GPU"):
        policy = "mixed_float16"
    elif enabled:
        log.warning("--mixed-precision needs a GPU; none is visible, training in float32")
    keras.config.set_dtype_policy(policy)
    try:
        yield policy
    finally:
        keras.config.set_dtype_policy(previous)
