"""PNG plots of a benchmark: latency against throughput, per-format bars, serving against concurrency, and
where a served request's mean time goes."""

from __future__ import annotations

from pathlib import Path

import math

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, ScalarFormatter

from training.plots import save_png

PRECISION_COLORS = {"fp32": "#4C72B0", "fp16": "#55A868", "int8": "#C44E52"}


def nice_log_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Plain-number ticks for a log axis over [low, high]: 1-2-5 steps, thinned to at most ``most``,
    or finer steps when the range is narrower than one of them."""
    low, high = min(low, high), max(low, high)
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)

    def ticks(steps) -> list[float]:
        return [float(f"{m * 10.0 ** e:.6g}") for e in decades for m in steps if low <= m * 10.0 ** e <= high]

    for steps in ((1, 2, 5), (1, 3), (1,)):  # coarser until few enough
        found = ticks(steps)
        if len(found) <= most:
            break
    for steps in (range(1, 10), [m / 2 for m in range(2, 20)], [m / 10 for m in range(10, 100)],
                  [m / 100 for m in range(100, 1000)]):
        if len(found) >= 2:
            break
        found = ticks(steps)  # finer until two ticks fall inside
        while len(found) > most:
            found = found[::2]
    return found


def _log_axis(axes, which: str, values: list[float], margin: float = 1.35) -> None:
    """Log scale with room around the data (one point is not a degenerate range) and plain tick labels."""
    low, high = min(values) / margin, max(values) * margin
    getattr(axes, f"set_{which}scale")("log")
    getattr(axes, f"set_{which}lim")(low, high)
    axis = getattr(axes, f"{which}axis")
    axis.set_major_locator(FixedLocator(nice_log_ticks(low, high)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _label(entry: dict, many_threads: bool) -> str:
    label = entry["format"] + (" (cuda)" if entry["device"] == "cuda" else "")
    return f"{label}, {entry['threads']}t" if many_threads else label


def _entries(results: dict) -> list[dict]:
    return [e for e in results["formats"] if "error" not in e and e.get("measurements")]


def latency_vs_throughput(results: dict) -> Figure:
    entries = _entries(results)
    many = len({e["threads"] for e in entries}) > 1
    figure = Figure(figsize=(9, 6))
    axes = figure.subplots()
    for entry in entries:
        points = sorted(entry["measurements"], key=lambda m: m["batch_size"])
        xs, ys = [m["throughput"] for m in points], [m["p50_ms"] for m in points]
        line, = axes.plot(xs, ys, marker="o", label=_label(entry, many),
                          linestyle="--" if entry["precision"] != "fp32" else "-")
        for x, y, m in zip(xs, ys, points):
            axes.annotate(str(m["batch_size"]), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7,
                          color=line.get_color())
    measured = [m for entry in entries for m in entry["measurements"]]
    _log_axis(axes, "x", [m["throughput"] for m in measured])
    _log_axis(axes, "y", [m["p50_ms"] for m in measured])
    axes.set_xlabel("throughput (images/s)")
    axes.set_ylabel("p50 latency per call (ms)")
    axes.set_title("Latency against throughput (points labelled with batch size; lower right is better)")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def format_bars(results: dict) -> Figure:
    entries = [e for e in _entries(results) if any(m["batch_size"] == 1 for m in e["measurements"])] \
        or _entries(results)
    many = len({e["threads"] for e in entries}) > 1
    labels = [_label(e, many) for e in entries]
    colors = [PRECISION_COLORS.get(e["precision"], "gray") for e in entries]
    figure = Figure(figsize=(11, 0.45 * len(entries) + 1.8))
    left, right = figure.subplots(1, 2, sharey=True)
    one = [next((m["p50_ms"] for m in e["measurements"] if m["batch_size"] == 1), 0.0) for e in entries]
    best = [max(e["measurements"], key=lambda m: m["throughput"]) for e in entries]
    positions = range(len(entries))
    left.barh(positions, one, color=colors)
    left.set_yticks(list(positions), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("ms")
    left.set_title("Batch 1: p50 latency (lower is better)")
    right.barh(positions, [m["throughput"] for m in best], color=colors)
    right.set_xlabel("images/s")
    right.set_title("Best batch: throughput (higher is better)")
    for position, value in zip(positions, one):
        left.annotate(f"{value:.2f}", (value, position), xytext=(3, 0), textcoords="offset points", va="center",
                      fontsize=7)
    for position, m in zip(positions, best):
        right.annotate(f"{m['throughput']:.0f} (b{m['batch_size']})", (m["throughput"], position), xytext=(3, 0),
                       textcoords="offset points", va="center", fontsize=7)
    for axes in (left, right):  # room for the value labels
        axes.set_xlim(0, axes.get_xlim()[1] * 1.25)
    shown = {e["precision"] for e in entries}  # a legend entry for every colour drawn, and no other
    handles = [left.bar(0, 0, color=color, label=name) for name, color in PRECISION_COLORS.items() if name in shown]
    figure.legend(handles=handles, fontsize=8, loc="lower center", ncol=3, frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def serving_figure(results: dict) -> Figure:
    rows = results["serving"]
    figure = Figure(figsize=(11, 4.5))
    latency, throughput = figure.subplots(1, 2)
    for mode, batching in dict.fromkeys((r["mode"], r["batching"]) for r in rows):
        mine = sorted((r for r in rows if (r["mode"], r["batching"]) == (mode, batching)),
                      key=lambda r: r["concurrency"])
        mode = f"{mode}{' +batching' if batching else ''}"
        levels = [r["concurrency"] for r in mine]
        latency.plot(levels, [r["p50_ms"] for r in mine], marker="o", label=f"{mode} p50")
        latency.plot(levels, [r["p99_ms"] for r in mine], marker=".", linestyle=":", alpha=0.6,
                     color=latency.lines[-1].get_color())
        throughput.plot(levels, [r["requests_per_s"] for r in mine], marker="o", label=mode)
    threads = results["serving_config"]["threads"]  # 0: the server's automatic threads, against all cores in process
    cpu_onnx = [e for e in _entries(results) if e["format"] == "onnx" and e["device"] == "cpu"]
    onnx = next((e for e in cpu_onnx if e["threads"] == threads), None) if threads else \
        max(cpu_onnx, key=lambda e: e["threads"], default=None)
    one = next((m for m in onnx["measurements"] if m["batch_size"] == 1), None) if onnx else None
    if one:
        latency.axhline(one["p50_ms"], color="black", linestyle="--", linewidth=1, label="in-process ONNX b1 p50")
        throughput.axhline(max(m["throughput"] for m in onnx["measurements"]), color="black", linestyle="--",
                           linewidth=1, label="in-process ONNX best img/s")
    levels = sorted({r["concurrency"] for r in rows})
    for axes in (latency, throughput):
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_locator(FixedLocator(levels))
        axes.xaxis.set_minor_locator(NullLocator())
        axes.xaxis.set_major_formatter(ScalarFormatter())
        axes.set_xlabel("concurrent clients")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    _log_axis(latency, "y", [y for line in latency.lines for y in line.get_ydata() if y > 0])
    throughput.set_ylim(0, max(y for line in throughput.lines for y in line.get_ydata()) * 1.15)  # from zero:
    # a y-axis starting at the lowest rate makes 5 % look like a factor of two
    latency.set_ylabel("latency (ms; dotted: p99)")
    latency.set_title("ftx serve latency")
    throughput.set_ylabel("requests/s (1 image each)")
    throughput.set_title("ftx serve throughput")
    figure.tight_layout()
    return figure


BREAKDOWN_PARTS = (("compute_ms", "compute", "#4C72B0"), ("queue_ms", "batching queue", "#DD8452"),
                   ("server_handling_ms", "server handling", "#55A868"),
                   ("client_and_wire_ms", "client and wire", "#8C8C8C"))


def serving_breakdown_figure(results: dict) -> Figure:
    """One stacked bar per (mode, batching, concurrency): the mean latency split as perf_analyzer splits it."""
    rows = [r for r in results["serving"] if r.get("breakdown")]
    figure = Figure(figsize=(11, 1.3 + 0.32 * len(rows)))
    axes = figure.subplots()
    labels = [f"{r['mode']}{' +batching' if r['batching'] else ''}, c={r['concurrency']}" for r in rows]
    positions = range(len(rows))[::-1]  # the first level at the top, as the tables read
    left = [0.0] * len(rows)
    for key, name, color in BREAKDOWN_PARTS:
        widths = [max(0.0, r["breakdown"].get(key, 0.0)) for r in rows]  # a clock's jitter can dip below 0
        if not any(widths):
            continue
        axes.barh(list(positions), widths, left=left, color=color, label=name, height=0.7)
        left = [a + b for a, b in zip(left, widths)]
    axes.set_yticks(list(positions), labels, fontsize=8)
    axes.set_xlim(0, max(left) * 1.12 if any(left) else 1)
    axes.set_xlabel("mean latency per request (ms)")
    axes.set_title("ftx serve: where the mean request time goes (server's own metrics)", pad=24)
    axes.grid(True, axis="x", alpha=0.3)
    # above the bars, never on them: the longest bar reaches the right edge, where a legend inside would sit
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.06), ncol=len(BREAKDOWN_PARTS), frameon=False)
    figure.tight_layout()
    return figure


def write_plots(directory: Path, results: dict) -> list[Path]:
    if not _entries(results):
        return []
    written = [save_png(latency_vs_throughput(results), directory / "latency_vs_throughput.png"),
               save_png(format_bars(results), directory / "formats.png")]
    if results.get("serving"):
        written.append(save_png(serving_figure(results), directory / "serving.png"))
        if any(row.get("breakdown") for row in results["serving"]):
            written.append(save_png(serving_breakdown_figure(results), directory / "serving_breakdown.png"))
    return written
