"""One format in its own process: load, batch-size sweep, memory, then accuracy on the test set.

``python -m benchmarks.worker SPEC.json RESULT.json``. A process per format
keeps runtimes from sharing thread pools, allocators or TensorFlow's import,
makes peak memory that format's own, and lets the ONNX and LiteRT formats run
without TensorFlow. The result JSON is written atomically; a crash leaves none
and the parent reports the exit status and the log.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.measure import WindowPolicy, measure
from benchmarks.runners import RunnerSpec, open_runner

ACCURACY_BATCH = 32


@dataclass
class WorkerSpec:
    format: str
    family: str
    precision: str
    artifact: str
    device: str
    threads: int
    batch_sizes: list[int]
    inputs_dir: str  # images.npy (uint8 NHWC), labels.npy, files.json (paths, for the bytes signature)
    timing_images: int  # the first N test images, cycled, feed the timed calls
    accuracy_images: int  # 0: skip accuracy
    predictions_file: str
    policy: dict = field(default_factory=dict)
    cuda_graph: bool = False

    def runner_spec(self) -> RunnerSpec:
        return RunnerSpec(self.format, self.family, self.precision, Path(self.artifact))


def _status_mb(field: str) -> float | None:
    """A memory line of Linux's /proc/self/status ("VmRSS", "VmHWM") in MB; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak so far."""
    now = _status_mb("VmRSS")
    return peak_rss_mb() if now is None else now


def peak_rss_mb() -> float:
    """This process's own peak resident memory: Linux's VmHWM, which exec resets.

    ``ru_maxrss`` survives exec, so a worker started by a 2.6 GB ``ftx run``
    reported 2.6 GB for every format; it is the fallback off Linux only.
    """
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class Inputs:
    """The materialised test set, read lazily (the images file is memory-mapped)."""

    def __init__(self, directory: Path) -> None:
        self.images = np.load(directory / "images.npy", mmap_mode="r", allow_pickle=False)
        self.labels = np.load(directory / "labels.npy", allow_pickle=False)
        self.files = [Path(p) for p in json.loads((directory / "files.json").read_text())]

    def batch(self, kind: str, indices: np.ndarray):
        if kind == "encoded":
            return [self.files[i].read_bytes() for i in indices]
        return np.ascontiguousarray(self.images[indices], dtype=np.float32)


def timing_batches(inputs: Inputs, kind: str, batch_size: int, pool: int, count: int = 2) -> list:
    """``count`` distinct batches of real test images, cycling through the first ``pool``."""
    return [inputs.batch(kind, (np.arange(batch_size) + k * batch_size) % pool) for k in range(count)]


def run_worker(spec: WorkerSpec) -> dict:
    inputs = Inputs(Path(spec.inputs_dir))
    policy = WindowPolicy(**spec.policy)
    kind = "encoded" if spec.runner_spec().takes_bytes else "images"
    pool = min(spec.timing_images, len(inputs.labels))
    batches = {size: timing_batches(inputs, kind, size, pool) for size in spec.batch_sizes}
    baseline = rss_mb()
    print(f"{spec.format}: loading {spec.artifact}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    runner = open_runner(spec.runner_spec(), spec.device, spec.threads, spec.cuda_graph)
    load_seconds = time.perf_counter() - started
    loaded = rss_mb()
    result = {"format": spec.format, "device": spec.device, "threads": spec.threads,
              "load_seconds": load_seconds, "load_memory_mb": loaded - baseline,
              "providers": getattr(runner, "providers", None), "measurements": []}
    for size in spec.batch_sizes:
        if getattr(runner, "uses_device_io", False):
            runner.prepare(batches[size][0])
            measurement = measure(lambda i, s=size: runner.run_bound(s), size, policy)
        else:
            measurement = measure(lambda i, s=size: runner.predict(batches[s][i % len(batches[s])]), size, policy)
        result["measurements"].append(measurement.summary())
        print(f"{spec.format} batch {size}: {measurement.throughput:.1f} img/s, p50 "
              f"{measurement.summary()['p50_ms']:.2f} ms{'' if measurement.stable else ' (unstable)'}",
              file=sys.stderr, flush=True)
    result["peak_memory_mb"] = peak_rss_mb()  # the whole worker: Python, the inputs, the runtime and its model
    if spec.accuracy_images:
        count = min(spec.accuracy_images, len(inputs.labels))
        predictions = np.empty(count, dtype=np.int16)
        started = time.perf_counter()
        report_every = max(ACCURACY_BATCH, count // 20 // ACCURACY_BATCH * ACCURACY_BATCH)
        for start in range(0, count, ACCURACY_BATCH):
            indices = np.arange(start, min(start + ACCURACY_BATCH, count))
            predictions[indices] = np.asarray(runner.predict(inputs.batch(kind, indices))).argmax(axis=1)
            if start % report_every == 0:
                print(f"{spec.format} accuracy: {start + len(indices)}/{count} images", file=sys.stderr, flush=True)
        np.save(spec.predictions_file, predictions, allow_pickle=False)
        result["accuracy"] = {"images": count, "accuracy": float(np.mean(predictions == inputs.labels[:count])),
                              "seconds": time.perf_counter() - started}
    runner.close()
    return result


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = (argv or sys.argv[1:])[:2]
    spec = WorkerSpec(**json.loads(Path(spec_path).read_text()))
    try:
        result = run_worker(spec)
    except Exception as error:  # noqa: BLE001 - reported in the benchmark, which goes on with the next format
        traceback.print_exc()
        result = {"format": spec.format, "device": spec.device, "threads": spec.threads,
                  "error": f"{type(error).__name__}: {error}"}
    temporary = Path(f"{result_path}.tmp{os.getpid()}")
    temporary.write_text(json.dumps(result, indent=2))
    os.replace(temporary, result_path)
    return 0


def spec_json(spec: WorkerSpec) -> str:
    return json.dumps(asdict(spec), indent=2)


if __name__ == "__main__":
    sys.exit(main())
