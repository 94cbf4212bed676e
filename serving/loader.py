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
from export.manifest import MANIFEST_FILE
from serving.servable import InputLimits, Servable, load_servable
from serving.tfs_config import BatchingSettings
from serving.warmup import replay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionLoader:
    backend: str = "onnx"
    threads: int | None = None  # the runtime's intra-op threads (--tensorflow_intra_op_parallelism)
    inter_threads: int | None = None  # TensorFlow's inter-op threads (--tensorflow_inter_op_parallelism)
    limits: InputLimits = InputLimits()
    batching: BatchingSettings | None = None
    warmup: bool = True  # --enable_model_warmup
    warmup_iterations: int = 1

    def __call__(self, name: str, version: int, version_dir: Path) -> Servable:
        servable = self._load(name, version, version_dir)
        try:
            if self.warmup:
                records = replay(servable, version_dir, self.warmup_iterations)
                if records:
                    log.info("model %s version %d: %d warmup requests replayed", name, version, records)
        except BaseException:
            servable.close()
            raise
        return servable

    def _load(self, name: str, version: int, version_dir: Path):
        if self.backend == "savedmodel":
            from serving.servable import configure_tensorflow_threads

            configure_tensorflow_threads(self.threads, self.inter_threads)  # before TensorFlow runs anything
            if not (version_dir / MANIFEST_FILE).exists() and (version_dir / "saved_model.pb").is_file():
                return self._plain_saved_model(name, version, version_dir)
        limits = self.limits
        if self.batching is not None:
            limits = InputLimits(self.batching.max_batch_size, limits.max_elements, limits.max_image_pixels)
        servable = load_servable(name, version, version_dir, self.backend, self.threads, limits)
        if self.batching is not None:
            batcher = Batcher(servable.runner, self.batching, name=f"{name}-v{version}-batch")
            servable.runner, servable.close = batcher, batcher.close
        return servable

    def _plain_saved_model(self, name: str, version: int, version_dir: Path):
        """A SavedModel that ftx did not export: served generically (serving.saved_model_servable)."""
        from serving.saved_model_servable import load_saved_model

        if self.batching is not None:
            log.warning("model %s version %d is not an ftx export: served without server-side batching",
                        name, version)
        return load_saved_model(name, version, version_dir, self.limits)
