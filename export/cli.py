"""``ftx export RUN_DIR --name NAME --out EXPORT_ROOT``: flags (or ``--config FILE``) -> :func:`export.pipeline.export_run`.

Exit status: 0 blessed (or published with ``--allow-unblessed``), 1 refused by
the parity gate, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import sys

from export.config import ExportConfig
from export.formats import FORMATS
from export.parity import METRICS
from training.config import ConfigError, read_config_file
from training.flags import add_flags

DEFAULTS = ExportConfig()

# flag -> (config key, type, help). Every ExportConfig field but run_dir (positional) has exactly one flag.
FLAGS: list[tuple[str, str, type, str]] = [
    ("--name", "name", str, "model name: the directory under --out and the name TF Serving serves (required, "
                            "here or in --config)"),
    ("--out", "out", str, "export root; the version goes to OUT/NAME/<version>"),
    ("--version", "version", int, "version number to write (default: the next free one); never overwritten"),
    ("--formats", "formats", str, f"comma-separated, or 'all': {', '.join(FORMATS)} (savedmodel always)"),
    ("--opset", "opset", int, "ONNX opset for tf2onnx"),
    ("--parity-images", "parity_images", int, "test images the parity gate compares every format on"),
    ("--calibration-images", "calibration_images", int, "training images for int8 calibration"),
    ("--onnx-calibration", "onnx_calibration", str, "onnx-int8-static calibration: minmax, percentile or entropy"),
    ("--int8-float-convs", "int8_float_convs", int, "onnx-int8-static, and tflite-int8 with --no-int8-search: the "
                                                    "first N convolutions stay float32 (0: quantize all)"),
    ("--int8-max-drop", "int8_max_drop", float, "tflite-int8 search: points of validation accuracy int8 may lose (a "
                                                  "larger loss passes only when the images cannot tell it from chance)"),
    ("--convert-timeout", "convert_timeout", int, "seconds tf2onnx may take before that format fails"),
    ("--seed", "seed", int, "seed choosing the parity and calibration images"),
]
SWITCHES: list[tuple[str, str, str]] = [
    ("--allow-unblessed", "allow_unblessed", "publish the version even when the parity gate refuses it"),
    ("--tflite-uint8-io", "tflite_uint8_io", "tflite-int8: uint8 input and output instead of float32"),
    ("--int8-search", "int8_search", "tflite-int8: rank layers by quantization error and keep float the fewest "
                                     "that pass the parity gate's accuracy rule (--int8-max-drop) on validation "
                                     "images"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", default=argparse.SUPPRESS, help="training run directory (ftx train)")
    parser.add_argument("--config", help="TOML/YAML/JSON file of options (flags override it; an [export] table "
                                         "is unwrapped)")
    add_flags(parser, FLAGS, [], DEFAULTS, show=lambda key, value: "all" if key == "formats" else value)
    parser.add_argument("--threshold", dest="thresholds", action="append", default=argparse.SUPPRESS,
                        metavar="TARGET.METRIC=VALUE",
                        help="override a parity threshold; TARGET is fp32, fp16, int8 or a format, METRIC one of "
                             f"{', '.join(METRICS)}, VALUE a number or 'none' (repeatable). Defaults: fp32 "
                             "max_abs_diff=1e-4 and min_top1_agreement=1; fp16 min_top1_agreement=0.995; "
                             "int8 max_accuracy_drop=1 (points)")
    add_flags(parser, [], SWITCHES, DEFAULTS)

def config_from_args(args: argparse.Namespace) -> ExportConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(read_config_file(args.config, table="export"))
    keys = {"run_dir"} | {key for _, key, _, _ in FLAGS} | {key for _, key, _ in SWITCHES} | {"thresholds"}
    values.update({key: value for key, value in vars(args).items() if key in keys})
    if isinstance(values.get("formats"), str):
        values["formats"] = values["formats"].split(",")
    return ExportConfig.from_dict(values).validate()


def run(args: argparse.Namespace) -> int:
    from export.run_dir import RunDirError
    from export.versions import VersionError

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"ftx export: {error}", file=sys.stderr)
        return 2
    from export.pipeline import export_run

    try:
        result = export_run(config)
    except (ConfigError, RunDirError, VersionError) as error:
        print(f"ftx export: {error}", file=sys.stderr)
        return 2
    print(summary_table(result))
    if result.blessed:
        print(f"BLESSED: {result.directory}")
        return 0
    reasons = "\n".join(f"  - {reason}" for reason in result.verdict.reasons)
    if result.published:
        print(f"NOT BLESSED, published anyway (--allow-unblessed): {result.directory}\n{reasons}", file=sys.stderr)
        return 0
    print(f"NOT BLESSED: the parity gate refused this export; it was kept, unserved, at {result.directory}\n"
          f"{reasons}\nFix the failing format, relax its threshold with --threshold, leave it out of --formats, "
          "or publish anyway with --allow-unblessed.", file=sys.stderr)
    return 1


def summary_table(result) -> str:
    """One row per format: file size, conversion time, parity numbers and verdict."""
    header = ("format", "size", "convert s", "max |dp|", "top-1 agree", "accuracy", "result")
    rows = []
    for name, outcome in result.outcomes.items():
        artifact = result.manifest["artifacts"][name]
        parity = result.verdict.results.get(name)
        size = f"{artifact['bytes'] / 1e6:.2f} MB" if artifact["bytes"] else "-"
        if parity is None:
            rows.append((name, size, "-", "-", "-", "-", "FAILED"))
            continue
        rows.append((name, size, f"{outcome.convert_seconds:.1f}", f"{parity.max_abs_diff:.1e}",
                     f"{parity.top1_agreement:.4f}", f"{parity.accuracy:.4f}",
                     "FAIL" if not parity.passed else "pass (undecided)" if parity.warnings else "pass"))
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    reference = next(iter(result.verdict.results.values()), None)
    footer = (f"parity on {result.verdict.images} {result.verdict.split} images; Keras accuracy "
              f"{reference.reference_accuracy:.4f}" if reference else "")
    return "\n".join([*lines, footer, f"export took {result.seconds:.1f} s"])
