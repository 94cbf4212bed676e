"""``run_pipeline``: train -> export (parity gate) -> serving smoke test -> bench -> report, resumable.

Every stage records a fingerprint in ``OUT/state.json``: a hash of its own
config table and of the finished stage it reads from. A stage whose
fingerprint matches a finished record, and whose outputs are still on disk, is
skipped; ``force`` redoes a stage (and so everything after it). An
interrupted training run resumes from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.run_config import STAGES, PipelineConfig, to_toml
from training.atomic import write_json, write_text

log = logging.getLogger(__name__)
STATE_FILE = "state.json"


@dataclass
class StageRecord:
    fingerprint: str
    status: str  # done, refused, failed, skipped (disabled)
    seconds: float
    outputs: dict
    summary: str
    finished: str  # UTC time; later stages hash it, so redoing a stage redoes what follows


@dataclass
class PipelineResult:
    out: Path
    records: dict[str, StageRecord]
    ran: list[str] = field(default_factory=list)  # stages run this time (the others were unchanged)
    stopped: str | None = None  # why the pipeline stopped early


def pipeline_dir(config: PipelineConfig) -> Path:
    if config.run.out:
        return Path(config.run.out).expanduser()
    from training.home import cache_dir

    return cache_dir("pipelines") / config.run.name


def _inside(out: Path, path: str | None, default: str) -> Path:
    """Relative stage paths live in the pipeline directory; absolute ones where the user names."""
    chosen = Path(path or default).expanduser()
    return chosen if chosen.is_absolute() else out / chosen


def _stamp() -> str:
    """When a stage finished; the nanoseconds make two runs within a second differ (later stages hash it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f"#{time.time_ns()}"


def _hash(values) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(data: str, test_csv: str | None) -> dict:
    """Which files the data are: names, sizes and modification times (cheap, and catches an added image)."""
    if data == "fashion-mnist":
        return {"builtin": data}
    root = Path(data).expanduser()
    listing = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    extra = Path(test_csv).expanduser() if test_csv else None
    return {"root": str(root.resolve()), "files": _hash(listing), "count": len(listing),
            "test_csv": [str(extra), extra.stat().st_mtime_ns] if extra and extra.is_file() else None}


class PipelineState:
    """``state.json``: one record per finished stage, written atomically after each stage."""

    def __init__(self, out: Path) -> None:
        self.path = out / STATE_FILE
        self.records: dict[str, StageRecord] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
                self.records = {name: StageRecord(**record) for name, record in raw.get("stages", {}).items()}
            except (json.JSONDecodeError, TypeError) as error:
                log.warning("ignoring unreadable %s (%s): every stage runs again", self.path, error)

    def save(self) -> None:
        write_json(self.path, {"stages": {name: dataclasses.asdict(r) for name, r in self.records.items()}})


class Pipeline:
    def __init__(self, config: PipelineConfig, force: set[str] | None = None, progress: bool | None = None) -> None:
        self.config = config
        self.out = pipeline_dir(config)
        self.force = set(force or ())
        unknown = self.force - set(STAGES) - {"all"}
        if unknown:
            raise ValueError(f"--force takes {', '.join(STAGES)} or all; got {', '.join(sorted(unknown))}")
        if "all" in self.force:
            self.force = set(STAGES)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.paths = {"train": _inside(self.out, config.train.out, "train"),
                      "exports": _inside(self.out, config.export.out, "exports"),
                      "serve": self.out / "serve-smoke.json",
                      "bench": _inside(self.out, config.bench.out, "bench")}

    # --- fingerprints -------------------------------------------------------------------------------

    def fingerprint(self, stage: str, records: dict[str, StageRecord]) -> str:
        config = self.config
        upstream = {"train": None, "export": "train", "serve": "export", "bench": "export", "report": None}[stage]
        values: dict = {"stage": stage}
        if stage == "train":
            values["config"] = config.section("train")
            values["data"] = data_fingerprint(config.train.data, config.train.test_csv)
        elif stage == "report":
            values["stages"] = {name: records[name].finished for name in records if name != "report"}
        else:
            values["config"] = config.section(stage)
        if upstream:
            values["upstream"] = records[upstream].finished if upstream in records else None
        return _hash(values)

    # --- running ------------------------------------------------------------------------------------

    def run(self) -> PipelineResult:
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(self.out / "config.toml", to_toml(self.config))
        state = PipelineState(self.out)
        result = PipelineResult(self.out, state.records)
        for index, stage in enumerate(STAGES, 1):
            fingerprint = self.fingerprint(stage, state.records)
            record = state.records.get(stage)
            fresh = (record is not None and record.fingerprint == fingerprint and stage not in self.force
                     and self._outputs_exist(record))
            if fresh:
                print(f"[{index}/{len(STAGES)}] {stage}: unchanged, skipped ({record.summary})", file=sys.stderr)
            else:
                record = self._execute(stage, fingerprint, record, state, result)
            if record.status in ("refused", "failed") and stage != "report":
                result.stopped = f"{stage}: {record.summary}"
                if "report" not in result.ran:  # the report says why it stopped
                    report = "report"
                    self._execute(report, self.fingerprint(report, state.records), state.records.get(report),
                                  state, result)
                break
        return result

    def _execute(self, stage: str, fingerprint: str, previous: StageRecord | None, state: PipelineState,
                 result: PipelineResult) -> StageRecord:
        """Run one stage, record it in state.json at once, and say how it went."""
        number = f"[{STAGES.index(stage) + 1}/{len(STAGES)}]"
        print(f"{number} {stage} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        status, outputs, summary = getattr(self, f"_{stage}")(state.records, previous, fingerprint)
        record = StageRecord(fingerprint, status, round(time.perf_counter() - started, 1), outputs, summary, _stamp())
        state.records[stage] = record
        state.save()
        result.ran.append(stage)
        print(f"{number} {stage}: {status} in {record.seconds:.1f} s ({summary})", file=sys.stderr)
        return record

    def _outputs_exist(self, record: StageRecord) -> bool:
        paths = [value for key, value in record.outputs.items() if key.endswith("_path")]
        return all(Path(path).exists() for path in paths)

    def _train(self, records, previous: StageRecord | None, fingerprint: str):
        from training.train import train

        run_dir = self.paths["train"]
        partial = run_dir.parent / f"{run_dir.name}.partial"
        marker = self.out / ".train-started"
        started_as = marker.read_text().strip() if marker.is_file() else None
        if run_dir.exists() and previous is not None and str(run_dir) == previous.outputs.get("run_dir_path"):
            shutil.rmtree(run_dir)  # our own earlier run, made with other options (or --force train)
        if partial.exists() and (started_as != fingerprint or "train" in self.force):
            shutil.rmtree(partial)  # an interrupted run with other options: it cannot be resumed
        write_text(marker, fingerprint)
        trained = train(dataclasses.replace(self.config.train, out=str(run_dir)))
        marker.unlink(missing_ok=True)
        metrics = trained.metrics
        test = (metrics.get("test") or {}).get("accuracy")
        valid = (metrics.get("validation") or {}).get("accuracy")
        summary = ", ".join(part for part in (f"validation accuracy {valid:.4f}" if valid is not None else "",
                                               f"test accuracy {test:.4f}" if test is not None else "") if part)
        return "done", {"run_dir_path": str(trained.run_dir), "test_accuracy": test,
                        "validation_accuracy": valid}, summary or "trained"

    def _export(self, records, previous, fingerprint: str):
        from export.pipeline import export_run

        config = dataclasses.replace(self.config.export, run_dir=records["train"].outputs["run_dir_path"],
                                     out=str(self.paths["exports"]))
        result = export_run(config.validate(), progress=self.progress)
        outputs = {"version_dir_path": str(result.directory), "version": result.version,
                   "blessed": result.blessed, "published": result.published, "reasons": list(result.verdict.reasons),
                   "warnings": list(result.verdict.warnings)}
        if result.published:
            verdict = "BLESSED" if result.blessed else "NOT BLESSED, published (allow_unblessed)"
            undecided = len(result.verdict.warnings)
            note = f" ({undecided} parity warning{'s' if undecided != 1 else ''}: see the log and parity.json)" \
                if undecided else ""
            return "done", outputs, f"{verdict} on {result.verdict.images} {result.verdict.split} images: version " \
                                    f"{result.version}{note}"
        return "refused", outputs, ("NOT BLESSED by the parity gate: " + "; ".join(result.verdict.reasons)
                                    + " (relax [export] thresholds, drop the format, or set allow_unblessed)")

    def _serve(self, records, previous, fingerprint: str):
        from benchmarks.smoke import smoke_test

        path = self.paths["serve"]
        if not self.config.serve.enabled:
            path.unlink(missing_ok=True)
            return "skipped", {}, "disabled ([serve] enabled = false)"
        export = records["export"].outputs
        result = smoke_test(Path(export["version_dir_path"]), self.config.export.name,
                            Path(records["train"].outputs["run_dir_path"]), self.config.serve.images,
                            self.config.serve.threads, self.out / "serve-smoke.log")
        write_json(path, result)
        failed = [check["check"] for check in result["checks"] if not check["passed"]]
        summary = (f"{len(result['checks'])} checks passed on {result['images']} images ({result['backend']})"
                   if not failed else f"FAILED: {', '.join(failed)}; see {path} and serve-smoke.log")
        return ("done" if not failed else "failed"), {"result_path": str(path)}, summary

    def _bench(self, records, previous, fingerprint: str):
        from benchmarks.bench import run_benchmark

        out = self.paths["bench"]
        if out.exists() and (out.is_relative_to(self.out) or
                             (previous is not None and str(out) == previous.outputs.get("report_dir_path"))):
            shutil.rmtree(out)  # our own earlier report; a directory of someone else's is refused by run_benchmark
        config = dataclasses.replace(self.config.bench, export_dir=records["export"].outputs["version_dir_path"],
                                     out=str(out))
        report_dir = run_benchmark(config, progress=self.progress)
        results = json.loads((report_dir / "results.json").read_text())
        timed = [row for row in results["formats"] if row.get("measurements")]
        fastest = min(timed, key=lambda row: row["measurements"][0]["p50_ms"], default=None)
        summary = (f"{len(timed)} format{'' if len(timed) == 1 else 's'}; fastest at batch {fastest['measurements'][0]['batch_size']}: "
                   f"{fastest['format']} {fastest['measurements'][0]['p50_ms']:.2f} ms p50" if fastest
                   else "no format measured")
        return "done", {"report_dir_path": str(report_dir)}, summary

    def _report(self, records, previous, fingerprint: str):
        from benchmarks.run_report import write_report

        paths = write_report(self.out, self.config, records)
        return "done", {"html_path": str(paths[0]), "markdown_path": str(paths[1])}, str(paths[0])
