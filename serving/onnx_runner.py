"""ONNX Runtime calls for ftx serve: fast alone, lean under load.

One request at a time is fastest on a session whose intra-op pool spans every
core. Several at once are not: concurrent calls on that session share its pool,
whose threads spin and wait on each other. So with automatic threads
(``--tensorflow_intra_op_parallelism=0``) the runner holds two sessions of the
model: a call that finds no other call running takes the all-core session;
calls that overlap take the 1-thread session, all at once, and the kernel
shares the cores between them. How many overlap is bounded by the server's
request threads (``--grpc_max_threads``, ``--rest_api_num_threads``).

Measured on the 2-core AMD EPYC VM with the demo's MobileNetV2 at 224 px, 16
gRPC clients, interleaved rounds (benchmarks/RESULTS.md): a bare Python gRPC
server calling one 2-thread session reached 0.85-0.89 of in-process ONNX
Runtime's best images/s and one calling a 1-thread session from 16 threads
0.93-0.99; ftx serve with 1-thread calls gated to one per core reached
0.83-0.86, ungated 0.88-0.91. An explicit thread count gets one session of
that many threads for every call.

The cost is a second copy of the weights in memory (ONNX Runtime sessions do
not share initializers by default).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OnnxRunner:
    """``runner(images) -> probabilities`` over one model, thread-safe; ``threads`` None or 0 is automatic."""

    def __init__(self, model: Path, threads: int | None = None) -> None:
        from export.onnx_runtime import open_session

        self.cores = usable_cores()
        self.adaptive = not threads and self.cores > 1
        self.fast = open_session(model, threads=threads or self.cores)
        self.lean = open_session(model, threads=1) if self.adaptive else None
        self.input_name = self.fast.get_inputs()[0].name
        if self.lean is not None:
            self._prime(self.lean)
        self._lock = threading.Lock()
        self._running = 0

    def _prime(self, session) -> None:
        """One call on zeros, so the first loaded request does not pay the session's first-run setup: warmup
        replays requests one at a time and only ever reaches the all-core session."""
        declared = session.get_inputs()[0]
        if declared.type != "tensor(float)":  # ftx's model.onnx takes float32 images; anything else is left cold
            return
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in declared.shape]
        session.run(["probabilities"], {self.input_name: np.zeros(shape, np.float32)})

    @property
    def session(self):
        """The session whose inputs and outputs describe the model."""
        return self.fast

    def __call__(self, images: np.ndarray) -> np.ndarray:
        feed = {self.input_name: images}
        if not self.adaptive:
            return self.fast.run(["probabilities"], feed)[0]
        with self._lock:
            alone = self._running == 0
            self._running += 1
        try:
            return (self.fast if alone else self.lean).run(["probabilities"], feed)[0]
        finally:
            with self._lock:
                self._running -= 1
