"""``ftx bench EXPORT_DIR``: flags (or ``--config FILE``) -> :class:`benchmarks.bench.BenchConfig` -> :func:`benchmarks.bench.run_benchmark`.

Exit status: 0 measured (even if a format failed: the report says which),
2 bad arguments or an unreadable export (nothing measured).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.bench import BenchConfig, BenchError, parse_ints, parse_names, parse_switches
from benchmarks.runners import BENCH_FORMATS, DEVICES
from benchmarks.serving_sweep import MODES
from training.config import ConfigError, read_config_file
from training.flags import add_flags

DEFAULTS = BenchConfig()


def _argument_type(parse):
    """A BenchError from a parser becomes argparse's own 'invalid value' message."""
    def convert(text: str):
        try:
            return parse(text)
        except BenchError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    convert.__name__ = parse.__name__
    return convert


# flag -> (config key, type, help). Every BenchConfig field but export_dir (positional) has exactly one flag.
FLAGS: list[tuple[str, str, object, str]] = [
    ("--formats", "formats", _argument_type(parse_names),
     f"comma-separated, from: {', '.join(BENCH_FORMATS)} (default: keras and every format the export holds)"),
    ("--version", "version", int, "with a model base path: this version (default: the newest blessed one)"),
    ("--batch-sizes", "batch_sizes", _argument_type(parse_ints), "comma-separated batch sizes"),
    ("--device", "device", str, f"{' or '.join(DEVICES)}; cuda measures the ONNX formats with ONNX Runtime's "
                                "CUDA provider (onnxruntime-gpu)"),
    ("--threads", "threads", _argument_type(parse_ints),
     "comma-separated intra-op thread counts to sweep (0: every usable core)"),
    ("--out", "out", str, "report directory (default: FTX_HOME/bench/<model>-v<N>-<time>)"),
    ("--accuracy-images", "accuracy_images", int, "test images for accuracy (default: the whole test split; 0: skip)"),
    ("--timing-images", "timing_images", int, "distinct test images the timed calls cycle through"),
    ("--warmup-seconds", "warmup_seconds", float, "untimed calls before each measurement"),
    ("--window-seconds", "window_seconds", float, "minimum length of a timing window"),
    ("--max-windows", "max_windows", int, "windows per measurement before it is reported as unstable"),
    ("--tolerance", "tolerance", float, "windows agree when their throughputs are within this fraction"),
    ("--serving-modes", "serving_modes", _argument_type(parse_names), f"comma-separated, from: {', '.join(MODES)}"),
    ("--concurrency", "concurrency", _argument_type(parse_ints), "comma-separated concurrent client counts"),
    ("--serving-seconds", "serving_seconds", float, "seconds timed per serving mode and concurrency level"),
    ("--serving-batching", "serving_batching", _argument_type(parse_switches),
     "comma-separated: off, on, or off,on (one server each; on = --enable_batching)"),
]
SWITCHES: list[tuple[str, str, str]] = [
    ("--serving", "serving", "also load `ftx serve` (CPU, needs the onnx format)"),
    ("--cuda-graph", "cuda_graph", "cuda: replay a captured CUDA graph per batch size"),
]


def _shown(value):
    if isinstance(value, tuple):
        return ",".join(("on" if v else "off") if isinstance(v, bool) else str(v) for v in value)
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export_dir", nargs="?", default=argparse.SUPPRESS,
                        help="a model base path (ftx export's OUT/NAME: its newest blessed version) or one "
                             "version directory (OUT/NAME/<version>)")
    parser.add_argument("--config", help="TOML/YAML/JSON file of options (flags override it; a [bench] table "
                                         "is unwrapped)")
    add_flags(parser, FLAGS, SWITCHES, DEFAULTS, show=lambda key, value: _shown(value))
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(read_config_file(args.config, table="bench"))
    keys = {"export_dir"} | {key for _, key, _, _ in FLAGS} | {key for _, key, _ in SWITCHES}
    values.update({key: value for key, value in vars(args).items() if key in keys})
    config = BenchConfig.from_dict(values)
    if not config.export_dir:
        raise BenchError("export_dir is required: a model base path (ftx export's OUT/NAME) or a version "
                         "directory (OUT/NAME/<version>)")
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    from benchmarks.bench import run_benchmark
    from benchmarks.terminal_summary import for_terminal
    from export.run_dir import RunDirError

    try:
        config = config_from_args(args)
        out = run_benchmark(config, progress=args.progress)
    except (BenchError, ConfigError, RunDirError, ValueError) as error:
        print(f"ftx bench: {error}", file=sys.stderr)
        return 2
    print(for_terminal((out / "summary.md").read_text()), end="")
    written = sorted(path.name for path in out.iterdir() if path.is_file())
    print(f"reports in {out}: {', '.join(written)}")
    return 0
