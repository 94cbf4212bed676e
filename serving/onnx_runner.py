"""ONNX Runtime calls for ftx serve: fast alone, lean under load.

One request at a time is fastest on a session whose intra-op pool spans every
core. Several at once are not: concurrent calls on that session share its pool
and oversubscribe the cores (measured on the 2-core EPYC with the demo's
MobileNetV2: 16 callers on a 2-thread session, 156-160 img/s; the same callers
on 1-thread calls, at most one per core, 196-223 img/s). So with automatic
threads (``--tensorflow_intra_op_parallelism=0``) the runner holds two
sessions of the model: a call that finds no other call running or waiting
takes the all-core session; the others take the 1-thread session, at most one
per core, waiting for a free core. An explicit thread count gets
one session of that many threads and no gate, as before.

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
        self._gate = threading.Condition()
        self._running = 0
        self._waiting = 0

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
        with self._gate:
            self._waiting += 1
            while self._running >= self.cores:
                self._gate.wait()
            self._waiting -= 1
            alone = self._running == 0 and self._waiting == 0
            self._running += 1
        try:
            return (self.fast if alone else self.lean).run(["probabilities"], feed)[0]
        finally:
            with self._gate:
                self._running -= 1
                self._gate.notify()
