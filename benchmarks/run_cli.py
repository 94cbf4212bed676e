"""``ftx run CONFIG`` and ``ftx demo``: train -> export -> serving smoke test -> bench -> report in one command.

Exit status: 0 every stage finished, 1 a stage stopped the pipeline (the
parity gate refused the export, or the smoke test failed; the report says
why), 2 a bad config (nothing run) or bad input found by a stage (earlier
stages are kept).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.run_config import STAGES, load_config, to_toml
from training.config import ConfigError

# The embedded default: Fashion-MNIST small split, mobilenet_v2 trained by the default recipe (lp-ft), the
# formats a deployer compares (fp32 for TF Serving and ONNX Runtime, full-integer and "easy" dynamic int8 for
# devices), a short benchmark.
DEMO: dict[str, dict] = {
    "run": {"name": "fashion"},
    "train": {"data": "fashion-mnist", "backbone": "mobilenet_v2"},
    "export": {"formats": ["savedmodel", "savedmodel-bytes", "onnx", "tflite", "tflite-int8-dynamic", "tflite-int8"]},
    "bench": {"formats": ["keras", "onnx", "tflite", "tflite-int8-dynamic", "tflite-int8"], "batch_sizes": [1, 32],
              "accuracy_images": 2000, "max_windows": 6, "serving_modes": ["grpc-tensor", "rest-bytes"],
              "concurrency": [1, 16], "serving_seconds": 3.0, "serving_batching": ["off"]},
}


def add_arguments(parser: argparse.ArgumentParser, demo: bool = False) -> None:
    if not demo:
        parser.add_argument("config", nargs="?", help="TOML/YAML/JSON file with [run] [train] [export] [serve] "
                                                      "[bench] tables (any may be left out: defaults)")
    parser.add_argument("--out", help="pipeline directory (default: [run] out, else FTX_HOME/pipelines/NAME)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help=f"redo this stage and the ones after it: {', '.join(STAGES)} or all (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config with defaults; "
                                                                     "run nothing")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: [run] progress, else when stderr is a terminal)")


def run(args: argparse.Namespace, base: dict | None = None) -> int:
    from benchmarks.pipeline import Pipeline

    try:
        config = load_config(getattr(args, "config", None), base=base)
        if args.out:
            config.run.out = args.out
        if args.print_config:
            print(to_toml(config), end="")
            return 0
        progress = args.progress if args.progress is not None else config.run.progress
        config.train.check_data()
        pipeline = Pipeline(config, force=set(args.force), progress=progress)
    except (ConfigError, ValueError) as error:
        print(f"ftx run: {error}", file=sys.stderr)
        return 2
    from benchmarks.bench import BenchError
    from export.pipeline import ExportError
    from export.run_dir import RunDirError
    from export.versions import VersionError
    from training.backbones.build import WeightsFileError
    from training.backbones.weights import WeightsUnavailableError
    from training.data import DataError
    from training.train import RunLockedError

    try:
        result = pipeline.run()
    except (ConfigError, DataError, WeightsFileError, WeightsUnavailableError, RunLockedError, RunDirError,
            VersionError, ExportError, BenchError, FileExistsError) as error:
        print(f"ftx run: {error}\nstages finished so far are kept; fix this and run the same command to go on",
              file=sys.stderr)
        return 2
    print(summary_table(result))
    if result.stopped:
        print(f"STOPPED at {result.stopped}", file=sys.stderr)
        return 1
    return 0


def summary_table(result) -> str:
    rows = [("stage", "status", "seconds", "result")]
    for stage in STAGES:
        record = result.records.get(stage)
        if record is None:
            rows.append((stage, "not run", "", ""))
        else:
            status = record.status if stage in result.ran else f"{record.status} (unchanged)"
            rows.append((stage, status, f"{record.seconds:.1f}", record.summary))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths)), row[3]]) for row in rows]
    return "\n".join([*lines, f"pipeline directory: {result.out}"])
