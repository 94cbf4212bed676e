"""How ``ftx serve`` turns a version directory into a servable: load, verify, batch, warm up.

A version is only handed to the store (and so only becomes AVAILABLE) after
all of it succeeded, so the store's availability-preserving policy keeps the
old version serving while a new one loads or when it fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from serving.batching import Batcher
from serving.servable import InputLimits, Servable, load_servable
from serving.tfs_config import BatchingSettings
from serving.warmup import replay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionLoader:
    backend: str = "onnx"
    threads: int | None = None  # the runtime's intra-op threads (--tensorflow_intra_op_parallelism)
    limits: InputLimits = InputLimits()
    batching: BatchingSettings | None = None
    warmup: bool = True  # --enable_model_warmup
    warmup_iterations: int = 1

    def __call__(self, name: str, version: int, version_dir: Path) -> Servable:
        limits = self.limits
        if self.batching is not None:
            limits = InputLimits(self.batching.max_batch_size, limits.max_elements, limits.max_image_pixels)
        servable = load_servable(name, version, version_dir, self.backend, self.threads, limits)
        if self.batching is not None:
            batcher = Batcher(servable.runner, self.batching, name=f"{name}-v{version}-batch")
            servable.runner, servable.close = batcher, batcher.close
        try:
            if self.warmup:
                records = replay(servable, version_dir, self.warmup_iterations)
                if records:
                    log.info("model %s version %d: %d warmup requests replayed", name, version, records)
        except BaseException:
            servable.close()
            raise
        return servable
