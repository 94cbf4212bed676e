"""What ``ftx score`` runs with, checked before Apache Beam is imported."""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.scoring.handlers import DEVICES, FORMATS

LOCAL_RUNNER = "FnApiRunner"
PREDICTIONS = "predictions"
BAD_FILES = "bad_files"
MAX_FILE_BYTES = 64 * 1024 * 1024  # as ftx serve's --max_request_bytes
MAX_IMAGE_PIXELS = 4096 * 4096  # as ftx serve's --max_image_pixels


@dataclass(frozen=True)
class ScoreSettings:
    """How to score; the export and the images are resolved by the caller."""

    model_format: str = "onnx"
    device: str = "cpu"
    top_k: int = 5
    min_batch_size: int = 8
    max_batch_size: int = 16
    max_file_bytes: int = MAX_FILE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    threads: int = 0  # ONNX Runtime intra-op threads per worker (0: automatic, see session_threads)
    pipeline_args: tuple[str, ...] = field(default_factory=tuple)  # Beam's own options, passed through

    def check(self) -> "ScoreSettings":
        if self.model_format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {self.model_format!r}")
        if self.device not in DEVICES:
            raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.top_k < 1:
            raise ValueError(f"--top-k must be >= 1, got {self.top_k}")
        if not 1 <= self.min_batch_size <= self.max_batch_size:
            raise ValueError(f"batch sizes must satisfy 1 <= min <= max, got min {self.min_batch_size} and max "
                             f"{self.max_batch_size}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {self.threads}")
        if self.max_file_bytes < 1 or self.max_image_pixels < 1:
            raise ValueError("--max-file-bytes and --max-image-pixels must be >= 1")
        return self

    @property
    def runner(self) -> str | None:
        """The runner the pass-through options name, or None (then the in-process one)."""
        for index, arg in enumerate(self.pipeline_args):
            if arg.startswith("--runner="):
                return arg.split("=", 1)[1]
            if arg == "--runner" and index + 1 < len(self.pipeline_args):
                return self.pipeline_args[index + 1]
        return None

    def local_workers(self) -> int:
        """Worker processes of the in-process runner: one per core, unless Beam's own options choose (1 for a
        cluster runner, which has its own)."""
        if self.runner is not None or any(arg.startswith("--direct_") for arg in self.pipeline_args):
            return 1
        from serving.onnx_runner import usable_cores

        return usable_cores()

    def session_threads(self) -> int:
        """ONNX Runtime intra-op threads per worker: as given, else 1 when a worker runs on each core (decoding
        and scoring in each process at once beats one process whose decoding leaves a core idle), else ONNX
        Runtime's default (every core)."""
        if self.threads:
            return self.threads
        return 1 if self.local_workers() > 1 else 0
