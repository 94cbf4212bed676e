"""LiteRT (TFLite) with XNNPACK as a benchmark runner: no TensorFlow import, only ai-edge-litert."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class LiteRTRunner:
    """``probabilities`` for float32 image batches; quantized I/O (``--tflite-uint8-io``) converted both ways."""

    input_kind = "images"

    def __init__(self, path: Path | str, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        # XNNPACK is LiteRT's default CPU delegate; num_threads sizes its thread pool
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.source = self.interpreter.get_input_details()[0]
        self.target = self.interpreter.get_output_details()[0]
        self.batch_size = 0

    def _resize(self, batch_size: int) -> None:
        if batch_size != self.batch_size:
            shape = list(self.source["shape"])
            self.interpreter.resize_tensor_input(self.source["index"], [batch_size, *shape[1:]])
            self.interpreter.allocate_tensors()
            self.source = self.interpreter.get_input_details()[0]
            self.target = self.interpreter.get_output_details()[0]
            self.batch_size = batch_size

    def predict(self, images: np.ndarray) -> np.ndarray:
        self._resize(len(images))
        x = images
        if self.source["dtype"] != np.float32:
            scale, zero = self.source["quantization"]
            limits = np.iinfo(self.source["dtype"])
            x = np.clip(np.round(x / scale + zero), limits.min, limits.max).astype(self.source["dtype"])
        self.interpreter.set_tensor(self.source["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.target["index"])
        if self.target["dtype"] != np.float32:
            scale, zero = self.target["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def close(self) -> None:
        del self.interpreter
