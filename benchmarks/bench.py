"""``ftx bench``: every format of one export, timed per batch size and scored on the whole test set, then served.

Each format runs in its own worker process (:mod:`benchmarks.worker`), one
after another so they never share the CPU; then ``ftx serve`` is loaded at
each concurrency level (:mod:`benchmarks.serving_sweep`). The reports are
written by :mod:`benchmarks.report` into a staged directory renamed into
place at the end.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.measure import WindowPolicy
from benchmarks.runners import BENCH_FORMATS, DEVICES, KERAS, runner_spec
from benchmarks.serving_sweep import MODES, SweepConfig
from benchmarks.worker import WorkerSpec, spec_json
from export.formats import FORMATS
from training.children import tied_to_parent
from export.manifest import MANIFEST_FILE

log = logging.getLogger(__name__)


class BenchError(ValueError):
    """Bad arguments or an export ftx bench cannot read; nothing was measured."""


@dataclass
class BenchConfig:
    """Options of one ``ftx bench``; flat, so every field is one flag and one config key."""

    export_dir: str = ""  # a version directory, or a model base path (then the newest blessed version)
    version: int | None = None  # with a base path: this version instead of the newest blessed one
    formats: tuple[str, ...] | None = None  # None: keras (if the run is here) and every format the export holds
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    device: str = "cpu"
    threads: tuple[int, ...] = (0,)  # 0: every usable core
    out: str | None = None  # default: FTX_HOME/bench/<model>-v<version>-<UTC time>
    accuracy_images: int | None = None  # None: the whole test split; 0: skip accuracy
    timing_images: int = 256
    warmup_seconds: float = WindowPolicy.warmup_seconds
    window_seconds: float = WindowPolicy.min_window_seconds
    max_windows: int = WindowPolicy.max_windows
    tolerance: float = WindowPolicy.tolerance
    serving: bool = True  # CPU only: the server runs ONNX Runtime on this machine
    serving_modes: tuple[str, ...] = MODES
    concurrency: tuple[int, ...] = (1, 4, 16)
    serving_seconds: float = 5.0
    serving_batching: tuple[bool, ...] = (False, True)
    cuda_graph: bool = False

    @property
    def policy(self) -> WindowPolicy:
        return WindowPolicy(warmup_seconds=self.warmup_seconds, min_window_seconds=self.window_seconds,
                            max_windows=self.max_windows, tolerance=self.tolerance,
                            consecutive=min(WindowPolicy.consecutive, self.max_windows))

    def check(self) -> None:
        from training.config import ConfigError, check_field_types

        try:
            check_field_types(self)
        except ConfigError as error:
            raise BenchError(str(error)) from None
        for name in ("formats", "batch_sizes", "threads", "serving_modes", "concurrency", "serving_batching"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                raise BenchError(f"{name} must be a list, got {value!r}")
        if self.version is not None and self.version < 0:
            raise BenchError(f"version must be >= 0, got {self.version}")
        if self.device not in DEVICES:
            raise BenchError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not self.batch_sizes or not all(isinstance(b, int) and b >= 1 for b in self.batch_sizes):
            raise BenchError(f"batch sizes must be integers >= 1, got {list(self.batch_sizes)}")
        if not self.threads or not all(isinstance(t, int) and t >= 0 for t in self.threads):
            raise BenchError(f"thread counts must be integers >= 0 (0: every core), got {list(self.threads)}")
        unknown = [name for name in self.formats or () if name not in BENCH_FORMATS]
        if unknown:
            raise BenchError(f"unknown format(s) {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(BENCH_FORMATS)}")
        if self.accuracy_images is not None and self.accuracy_images < 0:
            raise BenchError(f"accuracy_images must be >= 0, got {self.accuracy_images}")
        if self.timing_images < 1:
            raise BenchError(f"timing_images must be >= 1, got {self.timing_images}")
        if self.warmup_seconds < 0 or self.window_seconds < 0 or self.serving_seconds <= 0:
            raise BenchError("warmup_seconds and window_seconds must be >= 0 and serving_seconds > 0")
        try:
            self.policy  # noqa: B018 -- WindowPolicy checks its own combination
            SweepConfig(modes=self.serving_modes, concurrency=self.concurrency, seconds=self.serving_seconds,
                        batching=self.serving_batching)
        except ValueError as error:
            raise BenchError(str(error)) from None

    def to_dict(self) -> dict:
        values = asdict(self)
        values["policy"] = self.policy.as_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "BenchConfig":
        """From a config file's ``[bench]`` table: lists or comma-separated strings for the list options."""
        from training.config import ConfigError, known_keys

        try:
            values = known_keys(cls, values, "bench")
        except ConfigError as error:
            raise BenchError(str(error)) from None
        for name, parse in LIST_OPTIONS.items():
            value = values.get(name)
            if isinstance(value, list | tuple):
                value = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
            if isinstance(value, str):
                values[name] = parse(value)
        return cls(**values)


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BenchError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchError("expected at least one integer")
    return values


def parse_names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_switches(text: str) -> tuple[bool, ...]:
    values = {"off": False, "on": True, "false": False, "true": True}
    parts = parse_names(text)
    if not parts or any(part not in values for part in parts):
        raise BenchError(f"expected off, on or off,on; got {text!r}")
    return tuple(dict.fromkeys(values[part] for part in parts))


LIST_OPTIONS = {"formats": parse_names, "batch_sizes": parse_ints, "threads": parse_ints,
                "serving_modes": parse_names, "concurrency": parse_ints, "serving_batching": parse_switches}


@dataclass(frozen=True)
class ExportUnderTest:
    """What the manifest says about the export being benchmarked."""

    version_dir: Path
    manifest: dict

    @property
    def name(self) -> str:
        return str(self.manifest["model_name"])

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def run_dir(self) -> Path | None:
        path = Path(self.manifest.get("source_run", {}).get("path", ""))
        return path if path.name and (path / "model.keras").is_file() else None

    @property
    def available(self) -> list[str]:
        """Formats that converted (failed ones have no artifact), in table order, keras first if its run is here."""
        artifacts = self.manifest.get("artifacts", {})
        ok = [name for name in BENCH_FORMATS if artifacts.get(name, {}).get("status") == "ok"]
        return ([KERAS] if self.run_dir else []) + ok

    def size_bytes(self, format_name: str) -> int | None:
        if format_name == KERAS:
            return (self.run_dir / "model.keras").stat().st_size if self.run_dir else None
        return self.manifest.get("artifacts", {}).get(format_name, {}).get("bytes")


def read_export(path: Path | str, version: int | None = None) -> ExportUnderTest:
    """An export written by ``ftx export``: a version directory, or the model base path TF Serving takes
    (its newest blessed version, or ``version``)."""
    from export.versions import VersionError, chosen_version_dir

    try:
        path = chosen_version_dir(path, version, what="benchmarking")
    except VersionError as error:
        raise BenchError(str(error)) from None
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as error:
        raise BenchError(f"{manifest_path} is not valid JSON: {error}") from None
    return ExportUnderTest(path, manifest)


def resolve_formats(config: BenchConfig, export: ExportUnderTest) -> list[str]:
    from training.installs import has, lacking

    available = export.available
    if config.formats is None:
        wanted = available
        if not has("tensorflow"):  # the edge install: measure what runs here, and say what was left out
            left = [name for name in wanted if _needs_tensorflow(name)]
            wanted = [name for name in wanted if not _needs_tensorflow(name)]
            if left:
                log.warning("not measured: %s (each %s)", ", ".join(left), lacking("tensorflow"))
    else:
        missing = [name for name in config.formats if name not in available]
        if missing:
            why = "its source run (model.keras) is not on this machine" if missing == [KERAS] else "not in this export"
            raise BenchError(f"format(s) {', '.join(missing)}: {why}; this export has {', '.join(available)}")
        wanted = [name for name in BENCH_FORMATS if name in config.formats]
        blocked = [name for name in wanted if _needs_tensorflow(name)]
        if blocked and not has("tensorflow"):
            raise BenchError(f"format(s) {', '.join(blocked)}: each {lacking('tensorflow')}")
    if config.device == "cuda":
        wanted = [name for name in wanted if runner_spec(name, export.version_dir, export.run_dir).supports("cuda")]
        if not wanted:
            raise BenchError("--device cuda measures ONNX formats and this selection has none")
    return wanted


def _needs_tensorflow(name: str) -> bool:
    return name == KERAS or FORMATS[name].family == "savedmodel"


def default_out(export: ExportUnderTest) -> Path:
    from training.home import cache_dir

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return cache_dir("bench") / f"{export.name}-v{export.version}-{stamp}"


def run_worker(spec: WorkerSpec, work: Path, label: str, on_progress=None) -> dict:
    """One worker process; its stderr goes to ``logs/LABEL.log``, quoted when it fails.

    While it runs, the log's last line (the worker reports each batch size and
    its accuracy pass as it goes) is handed to ``on_progress`` every second.
    """
    spec_path, result_path, log_path = work / f"{label}.spec.json", work / f"{label}.result.json", \
        work.parent / "logs" / f"{label}.log"
    spec_path.write_text(spec_json(spec))
    log_path.parent.mkdir(exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(tied_to_parent([sys.executable, "-m", "benchmarks.worker", str(spec_path),
                                                   str(result_path)]),
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    returncode = process.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if on_progress is not None:
                        lines = log_path.read_text(errors="replace").strip().splitlines()
                        on_progress(lines[-1][:80] if lines else "loading")
        finally:
            if process.poll() is None:  # interrupted: do not leave a worker behind
                process.kill()
                process.wait()
    if result_path.is_file():
        return json.loads(result_path.read_text())
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    return {"format": spec.format, "device": spec.device, "threads": spec.threads,
            "error": f"worker exited with status {returncode} and no result: " + " | ".join(tail)}


def add_parity(rows: list[dict], labels: np.ndarray, reference_format: str | None) -> None:
    """Accuracy drop and top-1 agreement of every row against the reference's predictions (full test set)."""
    predictions = {(row["format"], row["device"]): np.load(row["predictions_file"], allow_pickle=False)
                   for row in rows if row.get("predictions_file") and Path(row["predictions_file"]).is_file()}
    reference = next((value for (name, device), value in predictions.items()
                      if name == reference_format and device == "cpu"), None)
    for row in rows:
        mine = predictions.get((row["format"], row["device"]))
        if mine is None or reference is None:
            continue
        count = min(len(mine), len(reference))
        row["reference"] = reference_format
        row["top1_agreement"] = float(np.mean(mine[:count] == reference[:count]))
        reference_accuracy = float(np.mean(reference[:count] == labels[:count]))
        row["reference_accuracy"] = reference_accuracy
        row["accuracy_drop_points"] = 100.0 * (reference_accuracy - float(np.mean(mine[:count] == labels[:count])))


def _threads(value: int) -> int:
    from serving.onnx_runner import usable_cores

    return value or usable_cores()


def run_benchmark(config: BenchConfig, progress: bool | None = None) -> Path:
    """Measure, write the reports, and return the report directory."""
    from tqdm import tqdm

    from benchmarks import environment, report
    from benchmarks.split_images import materialise
    from export.run_dir import read_run
    from training.atomic import staged_directory

    config.check()
    export = read_export(config.export_dir, config.version)
    formats = resolve_formats(config, export)
    if export.run_dir is None:
        raise BenchError(f"the export's source run {export.manifest.get('source_run', {}).get('path')!r} is not on "
                         "this machine: ftx bench needs its test images (and model.keras for the keras row)")
    run = read_run(export.run_dir)
    enabled = sys.stderr.isatty() if progress is None else progress
    out = Path(config.out).expanduser() if config.out else default_out(export)
    if out.exists():
        raise BenchError(f"{out} already exists; choose another --out")
    # the whole split unless told otherwise; without accuracy, only the images the timed calls cycle through
    count = None if config.accuracy_images is None else max(config.accuracy_images, config.timing_images)
    images = materialise(run, count, progress=enabled)
    accuracy_images = images.count if config.accuracy_images is None else min(config.accuracy_images, images.count)
    thread_counts = [_threads(t) for t in config.threads]
    jobs = [(name, threads) for name in formats for threads in thread_counts]
    reference_format = KERAS if KERAS in formats else ("onnx" if "onnx" in formats else None)
    extra_reference = config.device == "cuda" and "onnx" in export.available
    serving = config.serving and config.device == "cpu" and "onnx" in export.available
    sweep = SweepConfig(modes=config.serving_modes, concurrency=config.concurrency, seconds=config.serving_seconds,
                        threads=config.threads[0], batching=config.serving_batching)  # 0: ftx serve's default
    serving_steps = len(sweep.modes) * len(sweep.concurrency) * len(sweep.batching) + ("grpc-tensor" in sweep.modes)
    steps = len(jobs) + extra_reference + (serving_steps if serving else 0)
    log.info("benchmarking %s v%d: %s on %s, batch sizes %s, threads %s; accuracy on %d %s images",
             export.name, export.version, ", ".join(formats), config.device, list(config.batch_sizes),
             thread_counts, accuracy_images, images.split)
    with staged_directory(out) as stage, tqdm(total=steps, desc="bench", unit="step", disable=not enabled) as bar:
        work = stage / "work"
        work.mkdir()
        (stage / "predictions").mkdir()
        rows: list[dict] = []
        plan = [(name, config.device, threads, True) for name, threads in jobs]
        if extra_reference:  # top-1 agreement of the GPU results against fp32 on the CPU
            plan.append(("onnx", "cpu", thread_counts[0], False))
            reference_format = "onnx"
        for name, device, threads, timed in plan:
            spec = runner_spec(name, export.version_dir, export.run_dir)
            label = f"{name}-{device}-t{threads}"
            first = not timed or (name, threads) == next(job for job in jobs if job[0] == name)
            bar.set_postfix_str(label)
            worker = WorkerSpec(format=name, family=spec.family, precision=spec.precision, artifact=str(spec.artifact),
                                device=device, threads=threads, batch_sizes=list(config.batch_sizes) if timed else [],
                                inputs_dir=str(images.directory), timing_images=config.timing_images,
                                accuracy_images=accuracy_images if first else 0,
                                predictions_file=str(stage / "predictions" / f"{name}-{device}.npy"),
                                policy=config.policy.as_dict(), cuda_graph=config.cuda_graph)
            result = run_worker(worker, work, label,
                                lambda line, label=label: bar.set_postfix_str(f"{label}: {line}", refresh=True))
            result.update(runtime=spec.runtime, precision=spec.precision, size_bytes=export.size_bytes(name),
                          timed=timed)
            if first and accuracy_images and "error" not in result:
                result["predictions_file"] = worker.predictions_file
            rows.append(result)
            _log_row(result, bar)
            bar.update()
        add_parity(rows, np.load(images.directory / "labels.npy", allow_pickle=False), reference_format)
        for row in rows:  # relative to the report directory, which the stage is renamed to
            if row.get("predictions_file"):
                row["predictions_file"] = Path(row["predictions_file"]).relative_to(stage).as_posix()
        serving_rows: list[dict] = []
        serving_reference: dict | None = None
        if serving:
            from benchmarks.serving_sweep import sweep as serve_sweep
            from benchmarks.worker import Inputs

            inputs = Inputs(images.directory)
            pool = np.arange(min(config.timing_images, images.count))
            bar.set_postfix_str("ftx serve")

            def on_level(mode: str, row: dict) -> None:
                bar.update()
                if mode == "side-by-side":
                    message = (f"serve vs in-process ONNX Runtime, {len(row['rounds'])} interleaved rounds: c=1 p50 "
                               f"{row['served_c1_p50_ms']:.2f} vs {row['in_process_b1_p50_ms']:.2f} ms; "
                               f"c={row['concurrency']} {row['served_requests_per_s']:.1f} req/s vs batch "
                               f"{row['best_batch']} {row['in_process_best_images_per_s']:.1f} img/s")
                else:
                    message = (f"serve {mode:12s} batching {'on ' if row['batching'] else 'off'} "
                               f"c={row['concurrency']:<3d} {row['requests_per_s']:8.1f} req/s  p50 "
                               f"{row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}")
                tqdm.write(message, file=sys.stderr) if enabled else log.info("%s", message)

            onnx = next((r for r in rows if r["format"] == "onnx" and r.get("measurements")
                         and r["threads"] == _threads(sweep.threads)), None)
            best_batch = max(onnx["measurements"], key=lambda m: m["throughput"])["batch_size"] if onnx else None
            serving_rows, serving_reference = serve_sweep(
                export.version_dir, export.name, inputs.batch("images", pool), inputs.batch("encoded", pool), sweep,
                stage / "logs" / "serve.log", on_level, best_batch)
        results = {"export": {"path": str(export.version_dir.resolve()), "name": export.name,
                              "version": export.version, "status": export.manifest.get("status"),
                              "source_run": export.manifest.get("source_run")},
                   "config": config.to_dict(), "environment": environment.describe(),
                   "test_images": {"split": images.split, "accuracy_images": accuracy_images,
                                   "timing_images": min(config.timing_images, images.count)},
                   "formats": rows, "serving": serving_rows, "serving_side_by_side": serving_reference,
                   "serving_config": asdict(sweep) if serving else None}
        import shutil

        shutil.rmtree(work)
        report.write_reports(stage, results)
    return out


def _log_row(row: dict, bar) -> None:
    if "error" in row:
        message = f"{row['format']} ({row['device']}, {row['threads']} threads): FAILED: {row['error']}"
    else:
        first = row["measurements"][0] if row["measurements"] else None
        timing = (f"batch {first['batch_size']} p50 {first['p50_ms']:.2f} ms, " if first else "")
        accuracy = f"accuracy {row['accuracy']['accuracy']:.4f}" if row.get("accuracy") else ""
        message = f"{row['format']} ({row['device']}, {row['threads']} threads): {timing}{accuracy}"
    if bar.disable:
        log.info("%s", message)
    else:
        bar.write(message, file=sys.stderr)
