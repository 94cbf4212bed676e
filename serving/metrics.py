"""TF Serving's request metrics in Prometheus' text format (``--monitoring_config_file``).

Names, labels and buckets are TF Serving's (``util.cc``, ``prometheus_exporter.cc``):
``:tensorflow:serving:request_count{model_name,status}`` for every request and
``:tensorflow:serving:request_latency{model_name,API,entrypoint}``, a histogram
in microseconds with buckets 10 * 1.8^i (33 of them), for successful ones.
Two things differ on purpose: label values are escaped as Prometheus' format
requires (``\\``, ``"`` and newline: upstream leaves newlines, which lets a
model name inject lines), and a model name this server does not serve is
recorded as ``""`` so unknown names cannot grow the page without bound.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS_US = tuple(10 * 1.8 ** i for i in range(33))
COUNT, LATENCY = ":tensorflow:serving:request_count", ":tensorflow:serving:request_latency"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """absl::StrCat(double): shortest form, no trailing .0 (``10``, ``18``, ``32.4``)."""
    text = f"{value:.6g}"
    return text if "e" not in text else repr(value)


class Metrics:
    def __init__(self, serves: Callable[[str], bool] = lambda name: False) -> None:
        self._serves = serves  # is this a model the server serves (a dict lookup: it runs on every request)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_US) + 1))
        self._sums: dict[tuple[str, str, str], float] = defaultdict(float)

    def record(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        model = model if self._serves(model) else ""
        micros = seconds * 1e6
        with self._lock:
            self._counts[(model, status)] += 1
            if status == "OK":
                key = (model, api, entrypoint)
                self._buckets[key][bisect.bisect_left(BUCKETS_US, micros)] += 1
                self._sums[key] += micros

    def exposition(self) -> str:
        lines = [f"# TYPE {COUNT} counter"]
        with self._lock:
            for (model, status), count in sorted(self._counts.items()):
                lines.append(f'{COUNT}{{model_name="{escape(model)}",status="{escape(status)}"}} {count}')
            lines.append(f"# TYPE {LATENCY} histogram")
            for (model, api, entrypoint), buckets in sorted(self._buckets.items()):
                labels = f'model_name="{escape(model)}",API="{escape(api)}",entrypoint="{escape(entrypoint)}"'
                total = 0
                for edge, count in zip((*map(_number, BUCKETS_US), "+Inf"), buckets):
                    total += count
                    lines.append(f'{LATENCY}_bucket{{{labels},le="{edge}"}} {total}')
                lines.append(f"{LATENCY}_sum{{{labels}}} {_number(self._sums[(model, api, entrypoint)])}")
                lines.append(f"{LATENCY}_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"
