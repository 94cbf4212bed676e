"""TF Serving's request metrics in Prometheus' text format (``--monitoring_config_file``).

Names, labels and buckets are TF Serving's (``util.cc``, ``batching_session.cc``,
``prometheus_exporter.cc``):
``:tensorflow:serving:request_count{model_name,status}`` for every request;
``:tensorflow:serving:request_latency{model_name,API,entrypoint}`` (the whole
request) and ``:tensorflow:serving:runtime_latency{model_name,API,runtime}``
(the runtime's call, which includes the batching queue as BatchingSession's
Run does), histograms in microseconds with buckets 10 * 1.8^i (33 of them),
for successful requests; and, with batching,
``:tensorflow:serving:batching_session:queuing_latency{thread_pool_name}``,
buckets 100 * 1.2^i (52). Two things differ on purpose: label values are
escaped as Prometheus' format requires (``\\``, ``"`` and newline: upstream
leaves newlines, which lets a model name inject lines), and a model name this
server does not serve is recorded as ``""`` so unknown names cannot grow the
page without bound.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

from serving.request_timing import RequestTiming

BUCKETS_US = tuple(10 * 1.8 ** i for i in range(33))
QUEUING_BUCKETS_US = tuple(100 * 1.2 ** i for i in range(52))
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
QUEUING_LATENCY = ":tensorflow:serving:batching_session:queuing_latency"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """absl::StrCat(double): shortest form, no trailing .0 (``10``, ``18``, ``32.4``)."""
    text = f"{value:.6g}"
    return text if "e" not in text else repr(value)


class Histogram:
    """One Prometheus histogram family: cumulative buckets, sum and count per label set."""

    def __init__(self, name: str, label_names: tuple[str, ...], edges: tuple[float, ...]) -> None:
        self.name, self.label_names, self.edges = name, label_names, edges
        self._buckets: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0] * (len(edges) + 1))
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)

    def add(self, labels: tuple[str, ...], value: float) -> None:
        """Callers hold the Metrics lock."""
        self._buckets[labels][bisect.bisect_left(self.edges, value)] += 1
        self._sums[labels] += value

    def empty(self) -> bool:
        return not self._buckets

    def lines(self) -> list[str]:
        out = [f"# TYPE {self.name} histogram"]
        for labels, buckets in sorted(self._buckets.items()):
            text = ",".join(f'{key}="{escape(value)}"' for key, value in zip(self.label_names, labels))
            total = 0
            for edge, count in zip((*map(_number, self.edges), "+Inf"), buckets):
                total += count
                out.append(f'{self.name}_bucket{{{text},le="{edge}"}} {total}')
            out.append(f"{self.name}_sum{{{text}}} {_number(self._sums[labels])}")
            out.append(f"{self.name}_count{{{text}}} {total}")
        return out


class Metrics:
    def __init__(self, serves: Callable[[str], bool] = lambda name: False) -> None:
        self._serves = serves  # is this a model the server serves (a dict lookup: it runs on every request)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._request = Histogram(LATENCY, ("model_name", "API", "entrypoint"), BUCKETS_US)
        self._runtime = Histogram(RUNTIME_LATENCY, ("model_name", "API", "runtime"), BUCKETS_US)
        self._queuing = Histogram(QUEUING_LATENCY, ("thread_pool_name",), QUEUING_BUCKETS_US)

    def record(self, model: str, api: str, entrypoint: str, status: str, seconds: float,
               timing: RequestTiming | None = None) -> None:
        model = model if self._serves(model) else ""
        with self._lock:
            self._counts[(model, status)] += 1
            if timing is not None:
                for pool, waited in timing.queuing:  # every dequeued request, as batching_session.cc records
                    self._queuing.add((pool,), waited * 1e6)
            if status == "OK":
                self._request.add((model, api, entrypoint), seconds * 1e6)
                if timing is not None and timing.runtime_seconds is not None:
                    runtime_api = api[:1].upper() + api[1:]  # predict_util.cc says "Predict" for REST's "predict" too
                    self._runtime.add((model, runtime_api, timing.runtime), timing.runtime_seconds * 1e6)

    def exposition(self) -> str:
        lines = [f"# TYPE {COUNT} counter"]
        with self._lock:
            for (model, status), count in sorted(self._counts.items()):
                lines.append(f'{COUNT}{{model_name="{escape(model)}",status="{escape(status)}"}} {count}')
            lines += self._request.lines()
            lines += self._runtime.lines()
            if not self._queuing.empty():  # the family exists only once a batching session did
                lines += self._queuing.lines()
        return "\n".join(lines) + "\n"
