"""``ftx bench EXPORT_DIR``: flags -> :class:`benchmarks.bench.BenchConfig` -> :func:`benchmarks.bench.run_benchmark`.

Exit status: 0 measured (even if a format failed: the report says which),
2 bad arguments or an unreadable export (nothing measured).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.bench import BenchConfig, BenchError
from benchmarks.measure import WindowPolicy
from benchmarks.runners import BENCH_FORMATS, DEVICES
from benchmarks.serving_sweep import MODES

DEFAULTS = BenchConfig(export_dir="")
POLICY = WindowPolicy()


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _switches(text: str) -> tuple[bool, ...]:
    values = {"off": False, "on": True}
    parts = _names(text)
    if not parts or any(part not in values for part in parts):
        raise argparse.ArgumentTypeError(f"expected off, on or off,on; got {text!r}")
    return tuple(dict.fromkeys(values[part] for part in parts))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("export_dir", help="an export version directory (ftx export's OUT/NAME/<version>)")
    parser.add_argument("--formats", type=_names, default=None,
                        help=f"comma-separated, from: {', '.join(BENCH_FORMATS)} (default: keras and every format "
                             "the export holds)")
    parser.add_argument("--batch-sizes", type=_ints, default=DEFAULTS.batch_sizes,
                        help="comma-separated batch sizes")
    parser.add_argument("--device", choices=DEVICES, default=DEFAULTS.device,
                        help="cuda measures the ONNX formats with ONNX Runtime's CUDA provider (onnxruntime-gpu)")
    parser.add_argument("--threads", type=_ints, default=DEFAULTS.threads,
                        help="comma-separated intra-op thread counts to sweep (0: every usable core)")
    parser.add_argument("--out", default=None, help="report directory (default: FTX_HOME/bench/<model>-v<N>-<time>)")
    parser.add_argument("--accuracy-images", type=int, default=None,
                        help="test images for accuracy (default: the whole test split; 0: skip)")
    parser.add_argument("--timing-images", type=int, default=DEFAULTS.timing_images,
                        help="distinct test images the timed calls cycle through")
    parser.add_argument("--window-seconds", type=float, default=POLICY.min_window_seconds,
                        help="minimum length of a timing window")
    parser.add_argument("--max-windows", type=int, default=POLICY.max_windows,
                        help="windows per measurement before it is reported as unstable")
    parser.add_argument("--tolerance", type=float, default=POLICY.tolerance,
                        help="windows agree when their throughputs are within this fraction")
    parser.add_argument("--serving", action=argparse.BooleanOptionalAction, default=DEFAULTS.serving,
                        help="also load `ftx serve` (CPU, needs the onnx format)")
    parser.add_argument("--serving-modes", type=_names, default=DEFAULTS.serving_modes,
                        help=f"comma-separated, from: {', '.join(MODES)}")
    parser.add_argument("--concurrency", type=_ints, default=DEFAULTS.concurrency,
                        help="comma-separated concurrent client counts")
    parser.add_argument("--serving-seconds", type=float, default=DEFAULTS.serving_seconds,
                        help="seconds timed per serving mode and concurrency level")
    parser.add_argument("--serving-batching", type=_switches, default=DEFAULTS.serving_batching,
                        help="comma-separated: off, on, or off,on (one server each; on = --enable_batching)")
    parser.add_argument("--cuda-graph", action="store_true", help="cuda: replay a captured CUDA graph per batch size")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    from benchmarks.bench import run_benchmark
    from export.run_dir import RunDirError

    try:
        policy = WindowPolicy(min_window_seconds=args.window_seconds, max_windows=args.max_windows,
                              tolerance=args.tolerance, consecutive=min(POLICY.consecutive, args.max_windows))
        config = BenchConfig(export_dir=args.export_dir, formats=args.formats, batch_sizes=args.batch_sizes,
                             device=args.device, threads=args.threads, out=args.out,
                             accuracy_images=args.accuracy_images, timing_images=args.timing_images, policy=policy,
                             serving=args.serving, serving_modes=args.serving_modes, concurrency=args.concurrency,
                             serving_seconds=args.serving_seconds, serving_batching=args.serving_batching,
                             cuda_graph=args.cuda_graph)
        out = run_benchmark(config, progress=args.progress)
    except (BenchError, RunDirError, ValueError) as error:
        print(f"ftx bench: {error}", file=sys.stderr)
        return 2
    print((out / "summary.md").read_text())
    print(f"reports in {out}: summary.md, results.json, measurements.csv, PNG plots")
    return 0
