"""Request counts and latencies in Prometheus' text format (``--monitoring_config_file``).

Names follow TF Serving's (``:tensorflow:serving:request_count`` and
``:tensorflow:serving:request_latency``), so dashboards built for it read these.
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS_US = (500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_US) + 1))
        self._sums: dict[tuple[str, str], float] = defaultdict(float)

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        micros = seconds * 1e6
        with self._lock:
            self._counts[(model, api, status)] += 1
            buckets = self._buckets[(model, api)]
            buckets[next((i for i, edge in enumerate(BUCKETS_US) if micros <= edge), len(BUCKETS_US))] += 1
            self._sums[(model, api)] += micros

    def exposition(self) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, api, status), count in sorted(self._counts.items()):
                lines.append(f':tensorflow:serving:request_count{{model_name="{model}",API="{api}",'
                             f'status="{status}"}} {count}')
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api), buckets in sorted(self._buckets.items()):
                labels = f'model_name="{model}",API="{api}"'
                total = 0
                for edge, count in zip((*BUCKETS_US, "+Inf"), buckets):
                    total += count
                    lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="{edge}"}} {total}')
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {self._sums[(model, api)]:.0f}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"
