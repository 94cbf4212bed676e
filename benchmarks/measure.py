"""Timing windows repeated until they agree: the stability rule every ftx benchmark number passes.

A call is timed one at a time after a warm-up. Calls are grouped into windows
(at least ``min_window_calls`` calls and ``min_window_seconds`` each); windows
are repeated until the last ``consecutive`` of them agree, meaning their
throughputs are within ``tolerance`` of each other (max/min - 1). If that never
happens within ``max_windows`` the result is kept but marked unstable. The
latency statistics come from the agreeing (or last) windows only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def latency_stats(latencies_ms) -> dict:
    """Mean and the reported percentiles of per-call latencies in ms; NaN when there are none."""
    values = np.asarray(latencies_ms, dtype=float)
    if not values.size:
        return {"mean_ms": float("nan"), **{f"p{q}_ms": float("nan") for q in PERCENTILES}}
    return {"mean_ms": float(values.mean()), **{f"p{q}_ms": float(np.percentile(values, q)) for q in PERCENTILES}}


@dataclass(frozen=True)
class WindowPolicy:
    """How long to warm up and what counts as a stable measurement."""

    warmup_calls: int = 3
    warmup_seconds: float = 0.5
    min_window_calls: int = 3
    min_window_seconds: float = 1.0
    consecutive: int = 3  # windows that must agree
    tolerance: float = 0.10  # max/min - 1 of their throughputs
    max_windows: int = 10

    def __post_init__(self) -> None:
        if self.consecutive < 1 or self.max_windows < self.consecutive:
            raise ValueError(f"need 1 <= consecutive ({self.consecutive}) <= max_windows ({self.max_windows})")
        if self.min_window_calls < 1 or self.warmup_calls < 0:
            raise ValueError("min_window_calls must be >= 1 and warmup_calls >= 0")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Measurement:
    """Latency and throughput of one (runner, batch size) from its agreeing windows."""

    batch_size: int
    stable: bool
    windows: int  # windows run in all
    window_throughputs: list[float]  # images/s of every window, in order
    latencies_ms: list[float] = field(repr=False)  # per call, from the windows kept

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        """Images per second over the windows kept."""
        return self.batch_size * self.calls / (sum(self.latencies_ms) / 1e3)

    def summary(self) -> dict:
        return {"batch_size": self.batch_size, "stable": self.stable, "windows": self.windows, "calls": self.calls,
                "throughput": self.throughput, **latency_stats(self.latencies_ms),
                "window_throughputs": [round(value, 3) for value in self.window_throughputs]}


def agree(throughputs: list[float], tolerance: float) -> bool:
    """True when max/min - 1 of ``throughputs`` is at most ``tolerance``."""
    low, high = min(throughputs), max(throughputs)
    return low > 0 and high / low - 1.0 <= tolerance


def measure(call: Callable[[int], object], batch_size: int, policy: WindowPolicy = WindowPolicy(),
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Time ``call(i)`` (the i-th call of a batch of ``batch_size``) under ``policy``."""
    index = 0
    started = clock()
    while index < policy.warmup_calls or clock() - started < policy.warmup_seconds:
        call(index)
        index += 1
    windows: list[list[float]] = []
    throughputs: list[float] = []
    while len(windows) < policy.max_windows:
        latencies: list[float] = []
        window_start = clock()
        while len(latencies) < policy.min_window_calls or clock() - window_start < policy.min_window_seconds:
            before = clock()
            call(index)
            latencies.append(clock() - before)
            index += 1
        windows.append(latencies)
        throughputs.append(batch_size * len(latencies) / max(sum(latencies), 1e-12))
        if len(windows) >= policy.consecutive and agree(throughputs[-policy.consecutive:], policy.tolerance):
            break
    kept = windows[-policy.consecutive:]
    stable = len(windows) >= policy.consecutive and agree(throughputs[-policy.consecutive:], policy.tolerance)
    return Measurement(batch_size=batch_size, stable=stable, windows=len(windows), window_throughputs=throughputs,
                       latencies_ms=[seconds * 1e3 for window in kept for seconds in window])
