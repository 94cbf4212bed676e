"""Run an exported ONNX model with ONNX Runtime, importing only numpy and onnxruntime.

Edge hosts and the GPU benchmark machine have no TensorFlow; this module is
what they need to load ``model.onnx`` and get probabilities and labels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def open_session(model: Path | str | bytes, device: str = "cpu", threads: int | None = None) -> ort.InferenceSession:
    """An inference session on ``device`` (cpu or cuda) with all graph optimisations."""
    if device not in PROVIDERS:
        raise ValueError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("ONNX Runtime here has no CUDA provider; install onnxruntime-gpu (`pip install ftx[gpu]`)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=PROVIDERS[device])


def predict_probabilities(session: ort.InferenceSession, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``probabilities`` for float32 RGB 0-255 ``images`` [N, H, W, 3], in batches."""
    input_name = session.get_inputs()[0].name
    outputs = [session.run(["probabilities"], {input_name: np.ascontiguousarray(images[i:i + batch_size], np.float32)})[0]
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def session_labels(session: ort.InferenceSession) -> list[str]:
    """The class names ftx stores in the model's ``metadata_props``."""
    metadata = session.get_modelmeta().custom_metadata_map
    if "labels" not in metadata:
        raise KeyError("this ONNX model carries no 'labels' metadata; was it exported by ftx?")
    return list(json.loads(metadata["labels"]))
