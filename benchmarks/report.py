"""The benchmark's reports: results.json, CSVs, a Markdown summary with recommendations, and PNG plots.

Everything is computed from the measurements in ``results`` (the dict
``run_benchmark`` builds), so a report can be rewritten from a saved
results.json with :func:`write_reports`.
"""

from __future__ import annotations

import csv
import logging
import io
import math

from pathlib import Path

from benchmarks.environment import one_line
from benchmarks.recommendations import ACCURACY_BUDGET_POINTS, markdown_table, measured_entries, recommendations
from training.atomic import write_json, write_text

log = logging.getLogger(__name__)

MEASUREMENT_COLUMNS = ("format", "runtime", "precision", "device", "threads", "batch_size", "throughput", "mean_ms",
                       "p50_ms", "p90_ms", "p95_ms", "p99_ms", "calls", "windows", "stable", "load_seconds",
                       "load_memory_mb", "peak_memory_mb", "size_bytes", "accuracy", "accuracy_drop_points",
                       "top1_agreement")
SERVING_COLUMNS = ("mode", "batching", "concurrency", "requests", "errors", "seconds", "requests_per_s", "mean_ms",
                   "p50_ms", "p90_ms", "p95_ms", "p99_ms", "server_mean_ms", "server_handling_ms", "queue_ms",
                   "compute_ms", "client_and_wire_ms")
FULL_INT8 = ("tflite-int8", "onnx-int8-static")  # calibrated on a representative set: weights and activations int8
INT8_SPEEDUP_GOAL = 1.7
INT8_ACCURACY_GOAL_POINTS = 1.0
SERVE_OVERHEAD_GOAL_MS = 1.0  # issue 14
SERVE_THROUGHPUT_GOAL = 0.9
NO_FASTER = 0.95  # a quantized format under 1/0.95 = 1.05x its fp32's speed at batch 1 is "no faster"


def measurement_rows(results: dict) -> list[dict]:
    """One flat row per (format, device, threads, batch size): the CSV and the sweep table."""
    rows = []
    for entry in results["formats"]:
        if "error" in entry:
            continue
        accuracy = (entry.get("accuracy") or {}).get("accuracy")
        for measurement in entry["measurements"]:
            rows.append({**{key: entry.get(key) for key in ("format", "runtime", "precision", "device", "threads",
                                                            "load_seconds", "load_memory_mb", "peak_memory_mb",
                                                            "size_bytes", "accuracy_drop_points", "top1_agreement")},
                         "accuracy": accuracy, **measurement})
    return rows


def _at(entry: dict, batch_size: int) -> dict | None:
    return next((m for m in entry.get("measurements", []) if m["batch_size"] == batch_size), None)


def _best(entry: dict) -> dict | None:
    return max(entry.get("measurements", []), key=lambda m: m["throughput"], default=None)


def _timed(results: dict, device: str = "cpu") -> list[dict]:
    return measured_entries(results, device)


def goals(results: dict) -> list[dict]:
    """ftx's own CPU goals (issues 14 and 16), each with its target, what was measured, and pass/miss: kept in
    results.json for ftx's developers; the user-facing summary gives recommendations instead."""
    checks = []
    cpu = [e for e in _timed(results) if _at(e, 1)]
    fp32 = [e for e in cpu if e["precision"] == "fp32"]
    if fp32:
        best = min(fp32, key=lambda e: _at(e, 1)["p50_ms"])
        base = _at(best, 1)["p50_ms"]
        for entry in (e for e in cpu if e["format"] in FULL_INT8):
            p50 = _at(entry, 1)["p50_ms"]
            speedup = base / p50
            drop = entry.get("accuracy_drop_points")
            accurate = drop is not None and drop <= INT8_ACCURACY_GOAL_POINTS
            checks.append({
                "goal": f"{entry['format']}: >= {INT8_SPEEDUP_GOAL}x the best fp32 at batch 1, within "
                        f"{INT8_ACCURACY_GOAL_POINTS:g} point of accuracy",
                "measured": f"{speedup:.2f}x ({p50:.2f} ms vs {best['format']} {base:.2f} ms, {entry['threads']} "
                            f"vs {best['threads']} threads); accuracy "
                            + ("not measured" if drop is None else f"{-drop:+.2f} points on "
                               f"{entry['accuracy']['images']} images"),
                "passed": speedup >= INT8_SPEEDUP_GOAL and accurate})
    serving = results.get("serving") or []
    side = results.get("serving_side_by_side")
    if side:  # interleaved rounds: the comparison the goals ask for
        overhead = side["served_c1_p50_ms"] - side["in_process_b1_p50_ms"]
        checks.append({"goal": f"ftx serve gRPC adds <= {SERVE_OVERHEAD_GOAL_MS} ms to in-process ONNX Runtime p50 "
                               "(batch 1, concurrency 1)",
                       "measured": f"{overhead:+.2f} ms ({side['served_c1_p50_ms']:.2f} vs "
                                   f"{side['in_process_b1_p50_ms']:.2f} ms, medians of {len(side['rounds'])} "
                                   "interleaved rounds)",
                       "passed": overhead <= SERVE_OVERHEAD_GOAL_MS})
        ratio = side["served_requests_per_s"] / side["in_process_best_images_per_s"]
        checks.append({"goal": f"ftx serve gRPC at concurrency {side['concurrency']} within "
                               f"{100 * (1 - SERVE_THROUGHPUT_GOAL):.0f}% of the best in-process throughput",
                       "measured": f"{side['served_requests_per_s']:.1f} req/s (batching "
                                   f"{'on' if side['batching'] else 'off'}) = {100 * ratio:.0f}% of in-process "
                                   f"{side['in_process_best_images_per_s']:.1f} img/s (ONNX Runtime, batch "
                                   f"{side['best_batch']}), medians of {len(side['rounds'])} interleaved rounds",
                       "passed": ratio >= SERVE_THROUGHPUT_GOAL and side["errors"] == 0})
    if serving:
        errors = sum(r["errors"] for r in serving)
        checks.append({"goal": "no request fails during the serving sweep", "measured": f"{errors} errors in "
                       f"{sum(r['requests'] for r in serving)} requests", "passed": errors == 0})
    return checks


def slower_than_fp32(results: dict) -> list[str]:
    """Quantized formats slower, or not measurably faster, at batch 1 than the fp32 of the same runtime.

    Users reach for int8 or fp16 expecting speed; on many CPUs the easy
    variants give none, or lose it. The report says so plainly.
    """
    notes = []
    for device in ("cpu", "cuda"):
        entries = _timed(results, device)
        for entry in entries:
            if entry["precision"] == "fp32" or not _at(entry, 1):
                continue
            fp32 = next((e for e in entries if e["runtime"] == entry["runtime"] and e["precision"] == "fp32"
                         and e["threads"] == entry["threads"] and _at(e, 1)), None)
            if not fp32:
                continue
            mine, theirs = _at(entry, 1)["p50_ms"], _at(fp32, 1)["p50_ms"]
            if theirs / mine < NO_FASTER:
                verdict = f"is SLOWER than {fp32['format']} ({theirs / mine:.2f}x)"
            elif theirs / mine < 1 / NO_FASTER:
                verdict = f"is no faster than {fp32['format']}"
            else:
                continue
            note = (f"{entry['format']} {verdict} at batch 1 on {device} ({mine:.2f} ms vs {theirs:.2f} ms, "
                    f"{entry['threads']} threads)")
            if entry["precision"] == "fp16" and entry.get("size_bytes") and fp32.get("size_bytes"):
                note += (f": its fp16 weights halve the file ({entry['size_bytes'] / 1e6:.1f} MB vs "
                         f"{fp32['size_bytes'] / 1e6:.1f} MB) but are computed in fp32 here")
            notes.append(note)
    return notes


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(results: dict) -> str:
    export, environment = results["export"], results["environment"]
    lines = [f"# ftx bench: {export['name']} v{export['version']} ({export['status']})", "",
             f"- Date: {environment['date']}",
             f"- Machine: {one_line(environment)}",
             "- Libraries: " + ", ".join(f"{k} {v}" for k, v in environment["versions"].items() if v),
             f"- Accuracy on {results['test_images']['accuracy_images']} {results['test_images']['split']} images; "
             f"timed calls cycle through the first {results['test_images']['timing_images']} of them",
             f"- Stability: windows of >= {results['config']['policy']['min_window_seconds']} s repeated until "
             f"{results['config']['policy']['consecutive']} agree within "
             f"{100 * results['config']['policy']['tolerance']:.0f}% (at most "
             f"{results['config']['policy']['max_windows']} windows)", ""]
    picks = recommendations(results)
    if picks:
        lines += ["## Recommendations", "",
                  f"From the measurements below; accuracy against the reference, budget "
                  f"{ACCURACY_BUDGET_POINTS:g} point (a pick that loses more has the best one within it beside it).",
                  "", *markdown_table(picks), ""]
    notes = slower_than_fp32(results)
    if notes:
        lines += ["**Traps: quantized but not faster** (batch-1 p50 against the same runtime's fp32):", "",
                  *[f"- {note}" for note in notes], ""]  # the blank line makes it a list in every Markdown renderer
    lines += ["## Per format: batch 1 and best batch", "",
              "| format | runtime | device | threads | size MB | load s | peak mem MB | b1 p50 ms | b1 p99 ms | "
              "b1 img/s | best batch | best img/s | accuracy | Δ vs ref (pt) | top-1 agreement | stable |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in results["formats"]:
        if "error" in entry:
            lines.append(f"| {entry['format']} | {entry.get('runtime', '')} | {entry['device']} | {entry['threads']} | "
                         f"FAILED: {entry['error'].splitlines()[0][:150]} |||||||||||||")
            continue
        one, best = _at(entry, 1), _best(entry)
        accuracy = (entry.get("accuracy") or {}).get("accuracy")
        drop = entry.get("accuracy_drop_points")
        stable = all(m["stable"] for m in entry["measurements"]) if entry["measurements"] else None
        lines.append("| " + " | ".join([
            entry["format"], entry["runtime"], entry["device"], str(entry["threads"]),
            _fmt(entry["size_bytes"] / 1e6 if entry.get("size_bytes") else None),
            _fmt(entry.get("load_seconds")), _fmt(entry.get("peak_memory_mb"), 0),
            _fmt(one and one["p50_ms"]), _fmt(one and one["p99_ms"]), _fmt(one and one["throughput"], 1),
            _fmt(best and best["batch_size"]), _fmt(best and best["throughput"], 1), _fmt(accuracy, 4),
            _fmt(None if drop is None else 0.0 - drop), _fmt(entry.get("top1_agreement"), 4),
            "–" if stable is None else ("yes" if stable else "NO")]) + " |")
    reference = next((e.get("reference") for e in results["formats"] if e.get("reference")), None)
    compared = [e for e in results["formats"] if "error" not in e and e["format"] != reference]
    if reference and compared:  # with the reference alone there is nothing to compare it with
        lines += ["", f"Δ and agreement are against `{reference}` on the CPU, image by image."]
    lines += ["", "## Batch-size sweep", "",
              "| format | device | threads | batch | img/s | mean ms | p50 | p90 | p95 | p99 | windows | stable |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in measurement_rows(results):
        lines.append(f"| {row['format']} | {row['device']} | {row['threads']} | {row['batch_size']} | "
                     f"{row['throughput']:.1f} | {row['mean_ms']:.2f} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {row['windows']} | "
                     f"{'yes' if row['stable'] else 'NO'} |")
    if results.get("serving"):
        config = results["serving_config"]
        threads = f"{config['threads']} threads" if config.get("threads") else \
            "automatic threads: all cores alone, 1-thread calls under load"
        lines += ["", f"## Serving: `ftx serve` (ONNX Runtime, {threads}), one image per request, "
                      f"{config['seconds']:g} s per level", "",
                  "Client-measured latency, then where the mean goes, from the server's own metrics "
                  "(request_latency, runtime_latency, queuing_latency): client and wire, server handling "
                  "(parsing, decoding, answer), batching queue, compute.", "",
                  "| mode | batching | concurrency | req/s | mean ms | p50 | p95 | p99 | client+wire | server handling "
                  "| queue | compute | requests | errors |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in results["serving"]:
            parts = row.get("breakdown") or {}
            lines.append(f"| {row['mode']} | {'on' if row['batching'] else 'off'} | {row['concurrency']} | "
                         f"{row['requests_per_s']:.1f} | {_fmt(row.get('mean_ms'))} | {_fmt(row['p50_ms'])} | "
                         f"{_fmt(row.get('p95_ms'))} | {_fmt(row['p99_ms'])} | "
                         + " | ".join(_fmt(parts.get(key)) for key in ("client_and_wire_ms", "server_handling_ms",
                                                                        "queue_ms", "compute_ms"))
                         + f" | {row['requests']} | {row['errors']} |")
    side = results.get("serving_side_by_side")
    if side:
        lines += ["", f"### Side by side with in-process ONNX Runtime ({side['seconds']:g} s per step, interleaved)", "",
                  f"| round | in-process b1 p50 ms | served c=1 p50 ms | in-process b{side['best_batch']} img/s | "
                  f"served c={side['concurrency']} req/s | errors |", "|---|---|---|---|---|---|"]
        for index, row in enumerate(side["rounds"], 1):
            lines.append(f"| {index} | {row['in_process_b1_p50_ms']:.2f} | {row['served_c1_p50_ms']:.2f} | "
                         f"{row['in_process_best_images_per_s']:.1f} | {row['served_requests_per_s']:.1f} | "
                         f"{row['errors']} |")
        lines.append(f"| median | {side['in_process_b1_p50_ms']:.2f} | {side['served_c1_p50_ms']:.2f} | "
                     f"{side['in_process_best_images_per_s']:.1f} | {side['served_requests_per_s']:.1f} | "
                     f"{side['errors']} |")
    from training.installs import has

    if has("matplotlib"):
        lines += ["", "## Plots", "", "![latency vs throughput](latency_vs_throughput.png)", "",
                  "![per format](formats.png)"]
        if results.get("serving"):
            lines += ["", "![serving](serving.png)"]
            if any(row.get("breakdown") for row in results["serving"]):
                lines += ["", "![where served time goes](serving_breakdown.png)"]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_reports(directory: Path, results: dict) -> list[Path]:
    """results.json, measurements.csv, serving.csv, summary.md and the PNG plots (where matplotlib is installed)."""
    from training.installs import has, lacking

    results = {**results, "goals": goals(results), "recommendations": recommendations(results)}
    written = [write_json(directory / "results.json", results),
               write_text(directory / "measurements.csv", _csv(measurement_rows(results), MEASUREMENT_COLUMNS)),
               write_text(directory / "summary.md", summary_markdown(results))]
    if results.get("serving"):
        rows = [{**row, **(row.get("breakdown") or {})} for row in results["serving"]]
        written.append(write_text(directory / "serving.csv", _csv(rows, SERVING_COLUMNS)))
    if has("matplotlib"):
        from benchmarks import plots

        written += plots.write_plots(directory, results)
    else:  # the edge install: the tables are written, the plots are not
        log.warning("no PNG plots: the plots %s; the tables are written without them", lacking("matplotlib"))
    return written
