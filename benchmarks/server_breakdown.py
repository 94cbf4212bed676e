"""Where a served request's time goes, in the style of Triton's perf_analyzer, from ftx serve's own metrics.

perf_analyzer splits its average latency into client send/receive, server
queue and compute using Triton's statistics extension; TF Serving's
equivalent is its Prometheus page. Scraped before and after a load level,
the differences of the histograms' sums and counts give, per request, the
server's whole handling (``request_latency``), the runtime's call
(``runtime_latency``, which includes the batching queue as BatchingSession's
Run does) and the wait in the queue (``batching_session:queuing_latency``).
What the client measured beyond the server's handling is the wire and the
client's own (de)serialization.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

REQUEST = ":tensorflow:serving:request_latency"
RUNTIME = ":tensorflow:serving:runtime_latency"
QUEUING = ":tensorflow:serving:batching_session:queuing_latency"
MAX_PAGE_BYTES = 4 << 20


@dataclass(frozen=True)
class Totals:
    """Histogram sums (microseconds) and counts on one metrics page, for one model and entrypoint."""

    requests: int = 0
    request_us: float = 0.0
    runtime_calls: int = 0
    runtime_us: float = 0.0
    queued: int = 0
    queue_us: float = 0.0

    def __sub__(self, before: "Totals") -> "Totals":
        return Totals(*(getattr(self, name) - getattr(before, name) for name in self.__dataclass_fields__))


def parse_totals(page: str, model: str, entrypoint: str) -> Totals:
    """``entrypoint`` is GRPC or REST; queue waits are the server's (one model per bench server)."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        if family.name not in (REQUEST, RUNTIME, QUEUING):
            continue
        for sample in family.samples:
            suffix = sample.name[len(family.name):]
            if suffix not in ("_sum", "_count"):
                continue
            if family.name == REQUEST and (sample.labels.get("model_name") != model
                                           or sample.labels.get("entrypoint") != entrypoint):
                continue
            if family.name == RUNTIME and sample.labels.get("model_name") != model:
                continue
            values[family.name + suffix] = values.get(family.name + suffix, 0.0) + sample.value
    return Totals(int(values.get(REQUEST + "_count", 0)), values.get(REQUEST + "_sum", 0.0),
                  int(values.get(RUNTIME + "_count", 0)), values.get(RUNTIME + "_sum", 0.0),
                  int(values.get(QUEUING + "_count", 0)), values.get(QUEUING + "_sum", 0.0))


def scrape(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read(MAX_PAGE_BYTES).decode()


def breakdown(level: Totals, client_mean_ms: float) -> dict:
    """Mean milliseconds per request: client-side (wire and client), server handling outside the runtime,
    queue, compute; they add up to the client's mean. Only REST or only gRPC may run during the level: the
    runtime and queue families do not say which entrypoint a call came from."""
    if level.requests == 0:
        return {}
    server = level.request_us / level.requests / 1e3
    runtime = level.runtime_us / level.runtime_calls / 1e3 if level.runtime_calls else 0.0
    queue = level.queue_us / level.queued / 1e3 if level.queued else 0.0
    return {"server_requests": level.requests, "server_mean_ms": server,
            "client_and_wire_ms": client_mean_ms - server, "server_handling_ms": server - runtime,
            "queue_ms": queue, "compute_ms": runtime - queue}
