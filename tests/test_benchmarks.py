"""ftx bench: the stability rule, the runners on a tiny export, the reports, and the CLI's errors.

No test asserts a speed: timings here only have to exist and be positive.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.measure import Measurement, WindowPolicy, agree, measure
from benchmarks.recommendations import markdown_table, recommendations
from benchmarks.report import goals, measurement_rows, slower_than_fp32, summary_markdown, write_reports

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ScriptedClock:
    """A clock that only moves when a call "runs": each call takes the next scripted duration."""

    def __init__(self, durations) -> None:
        self.now, self.durations, self.calls = 0.0, iter(durations), 0

    def __call__(self) -> float:
        return self.now

    def call(self, index: int) -> None:
        self.now += next(self.durations)
        self.calls += 1


def test_constant_calls_are_stable_after_exactly_three_windows():
    clock = ScriptedClock([1 / 64] * 10_000)  # binary fractions: sums are exact
    policy = WindowPolicy(warmup_calls=2, warmup_seconds=0.0, min_window_calls=5, min_window_seconds=0.125)
    result = measure(clock.call, 4, policy, clock=clock)
    assert result.stable and result.windows == 3
    assert result.calls == 24 and clock.calls == 2 + 24  # warm-up excluded; 8 calls of 15.6 ms fill a 0.125 s window
    summary = result.summary()
    assert summary["throughput"] == pytest.approx(256.0)  # 4 images per 1/64 s
    assert summary["p50_ms"] == pytest.approx(15.625) and summary["p99_ms"] == pytest.approx(15.625)
    assert summary["window_throughputs"] == [256.0, 256.0, 256.0]


def test_statistics_come_from_the_agreeing_windows_only():
    # two slow windows (20 ms calls), then it settles at 10 ms: the slow calls must not reach the percentiles
    clock = ScriptedClock([0.02] * 10 + [0.01] * 10_000)
    policy = WindowPolicy(warmup_calls=0, warmup_seconds=0.0, min_window_calls=5, min_window_seconds=0.0)
    result = measure(clock.call, 1, policy, clock=clock)
    assert result.stable and result.windows == 5
    assert result.window_throughputs == pytest.approx([50, 50, 100, 100, 100])
    assert max(result.latencies_ms) == pytest.approx(10.0) and result.calls == 15


def test_never_agreeing_windows_are_reported_unstable_at_max_windows():
    durations = [0.01] * 5 + [0.02] * 5  # one window fast, the next twice as slow, forever
    clock = ScriptedClock(durations * 100)
    policy = WindowPolicy(warmup_calls=0, warmup_seconds=0.0, min_window_calls=5, min_window_seconds=0.0,
                          max_windows=7)
    result = measure(clock.call, 1, policy, clock=clock)
    assert not result.stable and result.windows == 7 and not result.summary()["stable"]
    assert result.calls == 15  # the last three windows are still reported


def test_agreement_and_policy_checks():
    assert agree([100, 105, 109.9], 0.10) and not agree([100, 111], 0.10) and not agree([0.0, 1.0], 0.1)
    for bad in ({"consecutive": 0}, {"consecutive": 4, "max_windows": 3}, {"tolerance": 0},
                {"tolerance": 1.5}, {"min_window_calls": 0}):
        with pytest.raises(ValueError):
            WindowPolicy(**bad)


def test_measurement_summary_percentiles():
    measurement = Measurement(batch_size=2, stable=True, windows=3, window_throughputs=[1.0, 1.0, 1.0],
                              latencies_ms=[float(v) for v in range(1, 101)])
    summary = measurement.summary()
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p95_ms"] == pytest.approx(95.05) and summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["throughput"] == pytest.approx(2 * 100 / 5.050)  # 100 calls of 2 images in 5.05 s


def test_edge_runners_do_not_import_tensorflow():
    code = ("import sys; import benchmarks.onnx_runner, benchmarks.litert_runner, benchmarks.worker, "
            "benchmarks.runners, benchmarks.measure; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; print('ok')")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               cwd=Path(__file__).parent.parent)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr


# --- on a tiny real export --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_export(tiny_run, tmp_path_factory):
    from export.config import ExportConfig
    from export.pipeline import export_run

    root = tmp_path_factory.mktemp("bench") / "exports"
    result = export_run(ExportConfig(run_dir=str(tiny_run), name="tiny", out=str(root),
                                     formats=["onnx", "tflite", "tflite-int8"], parity_images=12,
                                     calibration_images=8).validate())
    return result.directory


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The Keras model's probabilities on the tiny test split, in the order ftx bench reads it."""
    from benchmarks.split_images import materialise
    from benchmarks.worker import Inputs
    from export.run_dir import read_run
    from export.savedmodel import load_keras_model

    run = read_run(tiny_run)
    images = materialise(run)
    inputs = Inputs(images.directory)
    batch = inputs.batch("images", np.arange(images.count))
    return images, inputs, batch, np.asarray(load_keras_model(run).predict(batch, verbose=0))


def test_split_images_are_the_whole_test_split_and_cached(tiny_run, reference):
    from benchmarks.split_images import materialise
    from export.run_dir import read_run

    images, inputs, batch, _ = reference
    assert images.count == 12 and images.split == "test"
    assert inputs.images.dtype == np.uint8 and inputs.images.shape == (12, 32, 32, 3)
    assert sorted(np.bincount(inputs.labels).tolist()) == [4, 4, 4]
    assert all(path.is_file() for path in inputs.files)
    again = materialise(read_run(tiny_run))
    assert again.directory == images.directory  # cached: not decoded twice


@pytest.mark.parametrize("format_name", ["keras", "savedmodel", "savedmodel-bytes", "onnx", "onnx-bytes", "tflite"])
def test_runners_give_the_keras_answers(format_name, tiny_run, tiny_export, reference):
    from benchmarks.runners import open_runner, runner_spec

    images, inputs, batch, expected = reference
    runner = open_runner(runner_spec(format_name, tiny_export, tiny_run), "cpu", threads=1)
    try:
        kind = "encoded" if format_name.endswith("-bytes") else "images"
        assert runner.input_kind == kind
        for size in (1, 5, 12):  # LiteRT resizes its input between batch sizes
            got = np.asarray(runner.predict(inputs.batch(kind, np.arange(size))))
            np.testing.assert_allclose(got, expected[:size], atol=1e-4)
    finally:
        runner.close()


def test_cuda_without_a_gpu_is_a_clear_error(tiny_run, tiny_export):
    from benchmarks.runners import open_runner, runner_spec

    with pytest.raises(RuntimeError, match="no CUDA provider"):
        open_runner(runner_spec("onnx", tiny_export, tiny_run), "cuda")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        open_runner(runner_spec("tflite", tiny_export, tiny_run), "cuda")
    with pytest.raises(ValueError, match="device must be one of cpu, cuda"):
        open_runner(runner_spec("onnx", tiny_export, tiny_run), "tpu")


def test_worker_process_measures_every_batch_size_and_scores_the_test_split(tiny_export, reference, tmp_path):
    from benchmarks.bench import run_worker
    from benchmarks.worker import WorkerSpec

    images, inputs, _, expected = reference
    spec = WorkerSpec(format="tflite", family="tflite", precision="fp32", artifact=str(tiny_export / "model.tflite"),
                      device="cpu", threads=1, batch_sizes=[1, 4], inputs_dir=str(images.directory),
                      timing_images=6, accuracy_images=12, predictions_file=str(tmp_path / "p.npy"),
                      policy={"warmup_seconds": 0.0, "min_window_seconds": 0.02, "max_windows": 4})
    (tmp_path / "work").mkdir()
    result = run_worker(spec, tmp_path / "work", "tflite")
    assert "error" not in result, result.get("error")
    assert [m["batch_size"] for m in result["measurements"]] == [1, 4]
    assert all(m["throughput"] > 0 and m["p50_ms"] > 0 and 3 <= m["windows"] <= 4 for m in result["measurements"])
    assert result["load_seconds"] > 0 and result["peak_memory_mb"] >= 0
    predictions = np.load(tmp_path / "p.npy")
    np.testing.assert_array_equal(predictions, expected.argmax(axis=1))
    assert result["accuracy"]["images"] == 12
    assert result["accuracy"]["accuracy"] == pytest.approx(float(np.mean(predictions == inputs.labels)))
    assert (tmp_path / "logs" / "tflite.log").read_text().count("tflite batch") == 2


def test_worker_failure_is_reported_not_raised(tiny_export, reference, tmp_path):
    from benchmarks.bench import run_worker
    from benchmarks.worker import WorkerSpec

    images = reference[0]
    spec = WorkerSpec(format="onnx", family="onnx", precision="fp32", artifact=str(tmp_path / "missing.onnx"),
                      device="cpu", threads=1, batch_sizes=[1], inputs_dir=str(images.directory), timing_images=4,
                      accuracy_images=0, predictions_file=str(tmp_path / "p.npy"))
    (tmp_path / "work").mkdir()
    result = run_worker(spec, tmp_path / "work", "onnx")
    assert result["format"] == "onnx" and "missing.onnx" in result["error"]


def test_ftx_bench_end_to_end(tiny_export, tmp_path):
    from benchmarks.bench import BenchConfig, run_benchmark

    out = tmp_path / "report"
    config = BenchConfig(export_dir=str(tiny_export), formats=("keras", "onnx", "tflite", "tflite-int8"),
                         batch_sizes=(1, 4), threads=(1,), out=str(out), timing_images=8,
                         warmup_seconds=0.0, window_seconds=0.02, max_windows=4,
                         serving_modes=("grpc-tensor", "rest-bytes"), concurrency=(1, 2), serving_seconds=0.5,
                         serving_batching=(False,))
    assert run_benchmark(config, progress=False) == out
    results = json.loads((out / "results.json").read_text())
    assert [row["format"] for row in results["formats"]] == ["keras", "onnx", "tflite", "tflite-int8"]
    for row in results["formats"]:
        assert "error" not in row, row.get("error")
        assert row["accuracy"]["images"] == 12 and row["reference"] == "keras"
        assert (out / row["predictions_file"]).is_file()
    keras = results["formats"][0]
    assert keras["top1_agreement"] == 1.0 and keras["accuracy_drop_points"] == 0.0
    onnx = results["formats"][1]
    assert onnx["top1_agreement"] == 1.0 and onnx["size_bytes"] == (tiny_export / "model.onnx").stat().st_size
    assert results["test_images"] == {"split": "test", "accuracy_images": 12, "timing_images": 8}
    assert results["environment"]["logical_cores"] >= 1 and results["environment"]["versions"]["onnxruntime"]

    # each worker's own peak memory: the Keras worker holds TensorFlow, the LiteRT one does not, and neither
    # inherits this test process's (ru_maxrss survives exec; VmHWM does not)
    peaks = {row["format"]: row["peak_memory_mb"] for row in results["formats"]}
    assert peaks["keras"] > peaks["tflite"] + 100 and len(set(peaks.values())) == len(peaks), peaks
    with open(out / "measurements.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["format"], r["batch_size"]) for r in rows] == [(f, b) for f in ("keras", "onnx", "tflite", "tflite-int8")
                                                              for b in ("1", "4")]
    serving = results["serving"]
    assert [(r["mode"], r["concurrency"]) for r in serving] == [("grpc-tensor", 1), ("grpc-tensor", 2),
                                                                ("rest-bytes", 1), ("rest-bytes", 2)]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in serving)
    assert (out / "serving.csv").read_text().startswith("mode,batching,concurrency")
    summary = (out / "summary.md").read_text()
    assert "| tflite-int8 | LiteRT (XNNPACK) | cpu | 1 |" in summary and "## Recommendations" in summary
    assert "## Goals" not in summary  # ftx's own goals stay in results.json
    assert {r["need"] for r in results["recommendations"]} >= {"lowest latency", "highest throughput", "smallest file"}
    # the server's own metrics account for every timed request, and the parts add up to the client's mean
    for row in serving:
        parts = row["breakdown"]
        assert parts["server_requests"] == row["requests"], row
        assert parts["compute_ms"] > 0 and parts["queue_ms"] == 0.0 and parts["server_handling_ms"] >= 0, row
        assert parts["client_and_wire_ms"] + parts["server_mean_ms"] == pytest.approx(row["mean_ms"]), row
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert (out / "serving_breakdown.png").read_bytes()[:8] == PNG_MAGIC
    assert {g["goal"].split(":")[0] for g in results["goals"]} >= {"tflite-int8", "no request fails during the "
                                                                                  "serving sweep"}
    for name in ("latency_vs_throughput.png", "formats.png", "serving.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "work").exists() and not list(tmp_path.glob(".report.*"))
    with pytest.raises(Exception, match="already exists"):
        run_benchmark(config, progress=False)


# --- the report, from measurements given as data --------------------------------------------------

def _entry(name, runtime, precision, p50_by_batch, accuracy=None, drop=None, threads=2):
    measurements = [{"batch_size": b, "stable": True, "windows": 3, "calls": 10, "throughput": b * 1e3 / p50,
                     "mean_ms": p50, "p50_ms": p50, "p90_ms": p50, "p95_ms": p50, "p99_ms": p50,
                     "window_throughputs": []} for b, p50 in p50_by_batch.items()]
    return {"format": name, "runtime": runtime, "precision": precision, "device": "cpu", "threads": threads,
            "size_bytes": 1_000_000, "load_seconds": 0.1, "load_memory_mb": 1.0, "peak_memory_mb": 2.0,
            "measurements": measurements, "timed": True,
            "accuracy": None if accuracy is None else {"images": 10000, "accuracy": accuracy},
            "accuracy_drop_points": drop, "top1_agreement": 0.99, "reference": "keras"}


def _results(formats, serving=(), side=None):
    return {"export": {"name": "m", "version": 1, "status": "BLESSED"},
            "environment": {"date": "2026-11-23", "cpu": "cpu", "cpu_flags": [], "usable_cores": 2,
                            "memory_gib": 8, "gpus": [], "versions": {"python": "3.11"}},
            "test_images": {"split": "test", "accuracy_images": 10000, "timing_images": 256},
            "config": {"policy": WindowPolicy().as_dict()}, "formats": formats, "serving": list(serving),
            "serving_side_by_side": side,
            "serving_config": {"threads": 2, "seconds": 5.0, "batching": [False]} if serving else None}


def _serving(concurrency, p50, rps, errors=0, mode="grpc-tensor", batching=False):
    return {"mode": mode, "batching": batching, "concurrency": concurrency, "requests": 100, "errors": errors,
            "seconds": 5.0, "requests_per_s": rps, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50}


def _side_by_side(rounds):
    keys = ("in_process_b1_p50_ms", "served_c1_p50_ms", "in_process_best_images_per_s", "served_requests_per_s")
    rows = [dict(zip(keys, values), errors=0) for values in rounds]
    return {"rounds": rows, "seconds": 2.0, "best_batch": 8, "concurrency": 16, "batching": False, "errors": 0,
            **{key: float(np.median([row[key] for row in rows])) for key in keys}}


def test_goals_judge_int8_speed_and_accuracy_and_serving_overhead():
    formats = [_entry("keras", "Keras", "fp32", {1: 15.0}), _entry("onnx", "ONNX Runtime", "fp32", {1: 5.0, 8: 32.0}),
               _entry("tflite", "LiteRT (XNNPACK)", "fp32", {1: 6.0}),
               _entry("tflite-int8", "LiteRT (XNNPACK)", "int8", {1: 2.5}, 0.80, 0.4),
               _entry("onnx-int8-static", "ONNX Runtime", "int8", {1: 3.2}, 0.79, 0.5),
               _entry("onnx-int8-dynamic", "ONNX Runtime", "int8", {1: 30.0}, 0.80, 0.1)]
    serving = [_serving(1, 6.2, 150.0), _serving(16, 90.0, 210.0), _serving(16, 95.0, 190.0, batching=True)]
    # medians: in-process 5.0 ms vs served 5.8 ms; in-process 250 img/s vs served 210 req/s (84%)
    side = _side_by_side([(5.0, 5.8, 250.0, 210.0), (4.0, 9.0, 240.0, 230.0), (6.0, 5.7, 260.0, 200.0)])
    checks = goals(_results(formats, serving, side))
    by_name = {c["goal"].split(":")[0]: c for c in checks}
    assert by_name["tflite-int8"]["passed"] and "2.00x" in by_name["tflite-int8"]["measured"]
    assert not by_name["onnx-int8-static"]["passed"]  # 5.0 / 3.2 = 1.56x < 1.7x
    assert "onnx-int8-dynamic" not in by_name  # dynamic range is not full integer
    overhead = next(c for c in checks if "adds" in c["goal"])
    assert overhead["passed"] and "+0.80 ms (5.80 vs 5.00 ms, medians of 3" in overhead["measured"]
    slower = _side_by_side([(5.0, 6.2, 250.0, 210.0), (4.0, 9.0, 240.0, 230.0), (6.0, 6.0, 260.0, 200.0)])
    overhead = next(c for c in goals(_results(formats, serving, slower)) if "adds" in c["goal"])
    assert not overhead["passed"] and "+1.20 ms (6.20 vs 5.00 ms" in overhead["measured"]  # goal: at most 1.0 ms
    throughput = next(c for c in checks if "concurrency 16" in c["goal"])
    assert not throughput["passed"] and "210.0 req/s (batching off) = 84% of in-process 250.0" in throughput["measured"]
    assert next(c for c in checks if c["goal"].startswith("no request fails"))["passed"]
    failing = goals(_results(formats, [_serving(1, 6.2, 150.0, errors=2)], side))
    assert not next(c for c in failing if c["goal"].startswith("no request fails"))["passed"]

    accurate_but_slow = [_entry("onnx", "ONNX Runtime", "fp32", {1: 5.0}),
                         _entry("tflite-int8", "LiteRT (XNNPACK)", "int8", {1: 2.0}, 0.7, 1.5)]
    (check,) = goals(_results(accurate_but_slow))
    assert not check["passed"] and "-1.50 points" in check["measured"]  # fast enough, but 1.5 points lost


def test_report_names_quantized_formats_slower_than_fp32():
    formats = [_entry("onnx", "ONNX Runtime", "fp32", {1: 5.0}),
               _entry("onnx-int8-dynamic", "ONNX Runtime", "int8", {1: 30.0}),
               _entry("onnx-int8-static", "ONNX Runtime", "int8", {1: 4.9}),
               _entry("tflite", "LiteRT (XNNPACK)", "fp32", {1: 6.0}),
               _entry("tflite-fp16", "LiteRT (XNNPACK)", "fp16", {1: 5.5}),
               _entry("tflite-int8", "LiteRT (XNNPACK)", "int8", {1: 3.0})]
    notes = slower_than_fp32(_results(formats))
    assert notes == ["onnx-int8-dynamic is SLOWER than onnx (0.17x) at batch 1 on cpu (30.00 ms vs 5.00 ms, 2 threads)",
                     "onnx-int8-static is no faster than onnx at batch 1 on cpu (4.90 ms vs 5.00 ms, 2 threads)"]
    markdown = summary_markdown(_results(formats))
    assert "**Traps: quantized but not faster**" in markdown and all(note in markdown for note in notes)
    slow_fp16 = [_entry("tflite", "LiteRT (XNNPACK)", "fp32", {1: 6.0}),
                 {**_entry("tflite-fp16", "LiteRT (XNNPACK)", "fp16", {1: 6.1}), "size_bytes": 500_000}]
    assert slower_than_fp32(_results(slow_fp16)) == [
        "tflite-fp16 is no faster than tflite at batch 1 on cpu (6.10 ms vs 6.00 ms, 2 threads): its fp16 weights "
        "halve the file (0.5 MB vs 1.0 MB) but are computed in fp32 here"]


def test_recommendations_pick_per_need_and_show_the_best_within_the_accuracy_budget():
    formats = [_entry("keras", "Keras", "fp32", {1: 15.0, 8: 60.0}, 0.80, 0.0),
               _entry("onnx", "ONNX Runtime", "fp32", {1: 5.0, 8: 32.0}, 0.80, 0.0),
               {**_entry("tflite-int8", "LiteRT (XNNPACK)", "int8", {1: 2.5, 8: 16.0}, 0.78, 1.6),
                "size_bytes": 300_000},
               {**_entry("tflite-fp16", "LiteRT (XNNPACK)", "fp16", {1: 4.0}, 0.80, 0.1), "size_bytes": 500_000},
               {**_entry("tflite-int8-dynamic", "LiteRT (XNNPACK)", "int8", {1: 9.0}), "size_bytes": 250_000}]
    picks = recommendations(_results(formats))
    assert [(p["need"], p["format"], p["batch_size"], p["measured"], p["accuracy_cost"]) for p in picks] == [
        ("lowest latency", "tflite-int8", 1, "p50 2.50 ms, p99 2.50 ms", "-1.60 pt (10000 images)"),
        ("lowest latency, within 1 point", "tflite-fp16", 1, "p50 4.00 ms, p99 4.00 ms", "-0.10 pt (10000 images)"),
        ("highest throughput", "tflite-int8", 8, "500.0 img/s", "-1.60 pt (10000 images)"),
        ("highest throughput, within 1 point", "onnx", 8, "250.0 img/s", "+0.00 pt (10000 images)"),
        ("smallest file", "tflite-int8-dynamic", None, "0.25 MB", "not measured"),
        ("smallest file, within 1 point", "tflite-fp16", None, "0.50 MB", "-0.10 pt (10000 images)")]
    table = "\n".join(markdown_table(picks))
    assert "| lowest latency | cpu | tflite-int8 (LiteRT (XNNPACK), 2 threads) | 1 | p50 2.50 ms" in table
    assert "| smallest file | cpu | tflite-int8-dynamic (LiteRT (XNNPACK), 2 threads) | any | 0.25 MB |" in table


def test_failed_formats_stay_in_the_report(tmp_path):
    formats = [_entry("onnx", "ONNX Runtime", "fp32", {1: 5.0, 4: 12.0}),
               {"format": "tflite", "device": "cpu", "threads": 2, "runtime": "LiteRT (XNNPACK)",
                "error": "worker exited with status -9 and no result: Killed"}]
    results = _results(formats)
    assert [(r["format"], r["batch_size"]) for r in measurement_rows(results)] == [("onnx", 1), ("onnx", 4)]
    written = write_reports(tmp_path, results)
    assert {p.name for p in written} == {"results.json", "measurements.csv", "summary.md",
                                         "latency_vs_throughput.png", "formats.png"}
    assert "| tflite | LiteRT (XNNPACK) | cpu | 2 | FAILED: worker exited with status -9" in \
        (tmp_path / "summary.md").read_text()


# --- the command line ------------------------------------------------------------------------------

def _bench(*args):
    from training.cli import main

    return main(["bench", *map(str, args)])


def test_cli_refuses_what_is_not_an_export(tiny_run, tiny_export, tmp_path, capsys):
    assert _bench(tmp_path / "nowhere") == 2
    assert "no such export directory" in capsys.readouterr().err
    assert _bench(tiny_run) == 2
    assert "has no export_manifest.json and no version directories holding one: not an ftx export" in \
        capsys.readouterr().err
    assert _bench(tiny_export.parent, "--version", "2") == 2
    assert f"{tiny_export.parent} has no version 2; it has 1" in capsys.readouterr().err
    assert _bench(tiny_export, "--version", "1") == 2
    assert f"is one version already; give its base path {tiny_export.parent} with --version" in \
        capsys.readouterr().err
    partial = tmp_path / "2.partial"
    partial.mkdir()
    assert _bench(partial) == 2
    assert "half-written export" in capsys.readouterr().err


def test_a_model_base_path_means_its_newest_blessed_version(tiny_export, tmp_path):
    import shutil

    from benchmarks.bench import BenchError, read_export

    base = tmp_path / "tiny"
    for version in (1, 3, 4):
        shutil.copytree(tiny_export, base / str(version))
    (base / "4" / "BLESSED").rename(base / "4" / "NOT_BLESSED")  # published with allow_unblessed
    shutil.copytree(tiny_export, base / "5.not_blessed")
    assert read_export(base).version_dir == base / "3"
    assert read_export(base, 4).version_dir == base / "4"
    assert read_export(base / "1").version_dir == base / "1"
    for version in (1, 3):
        (base / str(version) / "BLESSED").unlink()
    with pytest.raises(BenchError, match=r"has no blessed version \(versions 1, 3, 4 were published unblessed\); "
                                         "choose one with --version"):
        read_export(base)


def test_cli_checks_arguments_before_measuring(tiny_export, tmp_path, capsys):
    assert _bench(tiny_export, "--formats", "onnx,pytorch", "--out", tmp_path / "a") == 2
    assert "unknown format(s) 'pytorch'" in capsys.readouterr().err
    assert _bench(tiny_export, "--formats", "onnx-fp16", "--out", tmp_path / "b") == 2
    assert "onnx-fp16: not in this export; this export has keras, savedmodel, savedmodel-bytes, onnx, onnx-bytes, tflite, " \
           "tflite-int8" in capsys.readouterr().err
    assert _bench(tiny_export, "--batch-sizes", "0,4", "--out", tmp_path / "c") == 2
    assert "batch sizes must be integers >= 1" in capsys.readouterr().err
    assert _bench(tiny_export, "--serving-modes", "grpc-json", "--out", tmp_path / "d") == 2
    assert "unknown serving mode(s) grpc-json" in capsys.readouterr().err
    config = tmp_path / "bench.toml"
    config.write_text("[bench]\nbatch_sizes = [1, 8]\nwindow_secs = 2\n")
    assert _bench(tiny_export, "--config", config, "--out", tmp_path / "e") == 2
    assert "unknown bench key(s) ['window_secs']; allowed: ['accuracy_images', 'batch_sizes'," in capsys.readouterr().err
    config.write_text("[bench]\nbatch_sizes = '1,x'\n")
    assert _bench(tiny_export, "--config", config, "--out", tmp_path / "f") == 2
    assert "expected comma-separated integers, got '1,x'" in capsys.readouterr().err
    config.write_text("[bench]\nmax_windows = 'ten'\n")
    assert _bench(tiny_export, "--config", config, "--out", tmp_path / "g") == 2
    assert "max_windows must be int, got 'ten' (str)" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def test_the_terminal_gets_the_summary_aligned_without_markdown():
    from benchmarks.terminal_summary import for_terminal

    markdown = ("# ftx bench: tiny v1 (BLESSED)\n\n- Date: today\n\n## Per format\n\n"
                "| format | b1 p50 ms | accuracy |\n|---|---|---|\n| onnx | 0.30 | 1.0000 |\n"
                "| tflite-int8 | 0.17 | 0.9167 |\n\nΔ is against `onnx`; **slower** ones are named.\n\n"
                "![serving](serving.png)\n")
    assert for_terminal(markdown) == (
        "ftx bench: tiny v1 (BLESSED)\n============================\n\n- Date: today\n\n"
        "Per format\n----------\n\n"
        "format       b1 p50 ms  accuracy\n"
        "onnx         0.30       1.0000\n"
        "tflite-int8  0.17       0.9167\n\n"
        "Δ is against onnx; slower ones are named.\n\n(plot: serving.png)\n")


# --- the plots ---------------------------------------------------------------------------------------

def _tick_labels(axis) -> list[str]:
    return [tick.get_text() for tick in axis.get_ticklabels() if tick.get_text()]


def _overlapping(labels) -> bool:
    boxes = sorted((label.get_window_extent() for label in labels if label.get_text()), key=lambda box: box.x0)
    return any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))


def test_latency_plot_with_one_point_has_room_and_plain_ticks_that_do_not_overlap():
    from benchmarks.plots import latency_vs_throughput, nice_log_ticks

    figure = latency_vs_throughput(_results([_entry("onnx", "ONNX Runtime", "fp32", {1: 0.30})]))
    figure.canvas.draw()
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    assert low < 1000 / 0.30 < high and high / low > 1.5  # the point sits inside a real range
    for axis in (axes.xaxis, axes.yaxis):
        labels = _tick_labels(axis)
        assert 2 <= len(labels) <= 8 and all(re.fullmatch(r"[0-9.]{1,6}", text) for text in labels), labels
        assert not _overlapping(axis.get_ticklabels())
    assert nice_log_ticks(0.2, 30) == [0.2, 0.5, 1, 2, 5, 10, 20]
    assert nice_log_ticks(1, 1e6) == [1, 10, 100, 1000, 10000, 100000, 1e6]
    assert nice_log_ticks(0.222, 0.405) == [0.3, 0.4] and nice_log_ticks(2469, 4500) == [3000, 4000]
    assert nice_log_ticks(1.01, 1.09) == [1.01, 1.03, 1.05, 1.07, 1.09]


def test_format_bars_legend_names_only_the_precisions_drawn():
    from benchmarks.plots import format_bars

    figure = format_bars(_results([_entry("onnx", "ONNX Runtime", "fp32", {1: 0.3}),
                                   _entry("tflite-int8", "LiteRT", "int8", {1: 0.2})]))
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["fp32", "int8"]


def test_serving_plot_throughput_starts_at_zero_and_latency_ticks_are_plain_numbers():
    from benchmarks.plots import serving_figure

    results = _results([_entry("onnx", "ONNX Runtime", "fp32", {1: 0.3})],
                       serving=[_serving(1, 1.4, 660.0), _serving(4, 3.1, 700.0), _serving(16, 30.0, 690.0)])
    figure = serving_figure(results)
    figure.canvas.draw()
    latency, throughput = figure.axes
    assert throughput.get_ylim()[0] == 0
    labels = _tick_labels(latency.yaxis)
    assert labels and all(re.fullmatch(r"[0-9.]+", text) for text in labels), labels
