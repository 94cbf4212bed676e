"""Where one request's server time goes: the runtime call and, with batching, the wait in the queue.

TF Serving records both per request (``RecordRuntimeLatency`` around the
session's Run, ``batching_session/queuing_latency`` per dequeued task). The
servable and the batcher run in the request's own thread, so a context
variable carries the record from the API handler down to them and back,
without threading a metrics object through every layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class RequestTiming:
    runtime: str = ""  # the runtime label of TF Serving's runtime_latency ("onnxruntime", "tensorflow")
    runtime_seconds: float | None = None  # the runner's call; includes the batching queue, as TF Serving's does
    queuing: list[tuple[str, float]] = field(default_factory=list)  # (batch thread pool, seconds waited)


_current: contextvars.ContextVar[RequestTiming | None] = contextvars.ContextVar("ftx_request_timing", default=None)


@contextlib.contextmanager
def timed_request() -> Iterator[RequestTiming]:
    timing = RequestTiming()
    token = _current.set(timing)
    try:
        yield timing
    finally:
        _current.reset(token)


@contextlib.contextmanager
def runtime_call(runtime: str) -> Iterator[None]:
    """Time the runtime's call for the current request; a call that raises is not recorded (as upstream's
    RecordRuntimeLatency, which follows the Run's error return)."""
    started = time.perf_counter()
    yield
    timing = _current.get()
    if timing is not None:
        timing.runtime = runtime
        # added up: MultiInference runs the model more than once
        timing.runtime_seconds = (timing.runtime_seconds or 0.0) + time.perf_counter() - started


def add_queuing(thread_pool: str, seconds: float) -> None:
    timing = _current.get()
    if timing is not None:
        timing.queuing.append((thread_pool, seconds))
