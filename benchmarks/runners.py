"""What ``ftx bench`` can run: every export format plus the run's Keras model, each with its runtime.

Runner modules are imported only when their format runs, so benchmarking an
ONNX file never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.formats import FORMATS

KERAS = "keras"
BENCH_FORMATS = (KERAS, *FORMATS)
DEVICES = ("cpu", "cuda")
RUNTIMES = {"keras": "Keras", "savedmodel": "TF SavedModel", "onnx": "ONNX Runtime", "tflite": "LiteRT (XNNPACK)"}


@dataclass(frozen=True)
class RunnerSpec:
    """One format to benchmark and where its artifact is."""

    format: str
    family: str  # keras | savedmodel | onnx | tflite
    precision: str
    artifact: Path  # the file (or, for keras and savedmodel, the directory) loaded

    @property
    def takes_bytes(self) -> bool:
        """Fed the test files' bytes (decoded inside the timed call), not decoded images."""
        return self.format != KERAS and FORMATS[self.format].variant == "bytes"

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.family]

    def supports(self, device: str) -> bool:
        """CUDA is measured through ONNX Runtime only (the GPU hosts ftx targets have no TensorFlow)."""
        return device == "cpu" or self.family == "onnx"


def runner_spec(format_name: str, export_dir: Path, run_dir: Path | None) -> RunnerSpec:
    if format_name == KERAS:
        if run_dir is None:
            raise ValueError("the keras format needs the export's source run (its model.keras)")
        return RunnerSpec(KERAS, "keras", "fp32", run_dir)
    if format_name not in FORMATS:
        raise ValueError(f"unknown format {format_name!r}; choose from {', '.join(BENCH_FORMATS)}")
    spec = FORMATS[format_name]
    artifact = export_dir if spec.family == "savedmodel" else export_dir / spec.filename
    return RunnerSpec(format_name, spec.family, spec.precision, artifact)


def open_runner(spec: RunnerSpec, device: str = "cpu", threads: int | None = None, cuda_graph: bool = False):
    """Load the runner of ``spec``: an object with ``input_kind``, ``predict(batch)`` and ``close()``."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if not spec.supports(device):
        raise ValueError(f"{spec.format} runs on the CPU only; on {device} ftx bench measures ONNX formats")
    if spec.family == "onnx" and spec.takes_bytes:
        from benchmarks.onnx_runner import OnnxBytesRunner

        return OnnxBytesRunner(spec.artifact, device, threads)
    if spec.family == "onnx":
        from benchmarks.onnx_runner import CudaOptions, OnnxRunner

        return OnnxRunner(spec.artifact, device, threads, CudaOptions(cuda_graph=cuda_graph))
    if spec.family == "tflite":
        from benchmarks.litert_runner import LiteRTRunner

        return LiteRTRunner(spec.artifact, threads)
    if spec.family == "keras":
        from benchmarks.tf_runners import KerasRunner

        return KerasRunner(spec.artifact, threads)
    from benchmarks.tf_runners import SavedModelRunner
    from export.signatures import SIGNATURE_BYTES, SIGNATURE_TENSOR

    return SavedModelRunner(spec.artifact, SIGNATURE_BYTES if spec.takes_bytes else SIGNATURE_TENSOR, threads)
