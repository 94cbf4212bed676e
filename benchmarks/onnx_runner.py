"""ONNX Runtime as a benchmark runner, with numpy and onnxruntime only (no TensorFlow on this path).

On CPU a call is ``session.run`` with numpy in and out, as an edge host would
call it. On CUDA (``onnxruntime-gpu``) the runner is what the GPU needs to be
fast: cuDNN's NHWC kernels (the exported graph is NHWC, so no layout
transposes), exhaustive convolution search, and, with ``device_io``, inputs
and outputs kept on the GPU through I/O binding, so a call times the model
rather than PCIe copies. ``cuda_graph`` replays a captured CUDA graph (fixed
batch size per session).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.onnx_runtime import open_session


@dataclass(frozen=True)
class CudaOptions:
    """CUDA execution-provider choices; the defaults are the fast ones."""

    prefer_nhwc: bool = True
    exhaustive_search: bool = True
    device_io: bool = True  # I/O binding with GPU-resident input and output
    cuda_graph: bool = False  # needs device_io and one batch size per session

    def provider_options(self) -> dict[str, str]:
        return {"prefer_nhwc": "1" if self.prefer_nhwc else "0",
                "cudnn_conv_algo_search": "EXHAUSTIVE" if self.exhaustive_search else "HEURISTIC",
                "enable_cuda_graph": "1" if self.cuda_graph else "0"}


def cuda_session(path: Path | str, options: CudaOptions) -> ort.InferenceSession:
    """A CUDA session; raises a clear error where this ONNX Runtime has no CUDA provider."""
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21 finds pip-installed CUDA/cuDNN this way
        ort.preload_dlls()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("ONNX Runtime here has no CUDA provider; install onnxruntime-gpu (`pip install ftx[gpu]`) "
                           "on a machine with an NVIDIA GPU")
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=session_options,
                                providers=[("CUDAExecutionProvider", options.provider_options()),
                                           "CPUExecutionProvider"])


class OnnxBytesRunner:
    """The ONNX model fed encoded files through ftx's TensorFlow-free decode: the edge server's bytes path."""

    input_kind = "encoded"
    uses_device_io = False

    def __init__(self, path: Path | str, device: str = "cpu", threads: int | None = None) -> None:
        self.runner = OnnxRunner(path, device, threads, CudaOptions(device_io=False))
        self.image_size = int(self.runner.session.get_inputs()[0].shape[1])

    @property
    def providers(self) -> list[str]:
        return self.runner.providers

    def predict(self, encoded: list[bytes]) -> np.ndarray:
        from training.data.numpy_decode import load_images

        return self.runner.predict(load_images(encoded, self.image_size))

    def close(self) -> None:
        self.runner.close()


class OnnxRunner:
    """``probabilities`` for float32 image batches from one ``.onnx`` file."""

    input_kind = "images"

    def __init__(self, path: Path | str, device: str = "cpu", threads: int | None = None,
                 cuda: CudaOptions = CudaOptions()) -> None:
        self.path, self.device, self.cuda = Path(path), device, cuda
        if device == "cpu":
            self.session = open_session(self.path, "cpu", threads=threads or os.cpu_count())
        elif device == "cuda":
            self.session = cuda_session(self.path, cuda)
        else:
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        self.input_name = self.session.get_inputs()[0].name
        self._bound: dict[int, tuple[ort.IOBinding, ort.OrtValue, ort.OrtValue]] = {}
        self._plain: ort.InferenceSession | None = None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """One call with numpy in and out (CPU, or CUDA without device I/O; accuracy passes)."""
        if self.device == "cuda" and self.cuda.cuda_graph:  # a graph-capturing session takes bound I/O only
            if self._plain is None:
                self._plain = cuda_session(self.path, CudaOptions(self.cuda.prefer_nhwc, self.cuda.exhaustive_search,
                                                                  self.cuda.device_io, cuda_graph=False))
            return self._plain.run(["probabilities"], {self.input_name: images})[0]
        return self.session.run(["probabilities"], {self.input_name: images})[0]

    def prepare(self, images: np.ndarray) -> None:
        """Copy ``images`` to the GPU once and bind input and output there (CUDA with device_io).

        A CUDA graph is captured for one input shape, so with ``cuda_graph``
        each batch size gets a fresh session.
        """
        if self.cuda.cuda_graph and self._bound:
            self._bound.clear()
            self.session = cuda_session(self.path, self.cuda)
        binding = self.session.io_binding()
        device_input = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(images, np.float32), "cuda", 0)
        classes = self.session.get_outputs()[0].shape[-1]
        device_output = ort.OrtValue.ortvalue_from_shape_and_type([len(images), classes], np.float32, "cuda", 0)
        binding.bind_ortvalue_input(self.input_name, device_input)
        binding.bind_ortvalue_output("probabilities", device_output)
        self._bound[len(images)] = (binding, device_input, device_output)

    def run_bound(self, batch_size: int) -> None:
        """One call on the batch bound by :meth:`prepare`; the result stays on the GPU."""
        binding = self._bound[batch_size][0]
        self.session.run_with_iobinding(binding)

    @property
    def uses_device_io(self) -> bool:
        return self.device == "cuda" and self.cuda.device_io

    def close(self) -> None:
        self._bound.clear()
        self._plain = None
        del self.session
