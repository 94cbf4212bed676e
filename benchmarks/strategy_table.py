"""Test accuracy and wall time per training strategy, on one or more datasets, over seeds.

    python -m benchmarks.strategy_table [--data fashion-mnist --data DIGITS_DIR] [--seeds 3]
                                        [--out benchmarks/results]

For each dataset: scratch, the converged linear probe (cached feature
extraction for 100 epochs: seconds), fine-tune, two-phase and lp-ft (the
default recipe), each with its own defaults, seed 42. Then the two cases with
the best *validation* accuracy (never test) are re-run with further seeds
until each has ``--seeds``. Every case scores the dataset's whole test split.

``strategy_table.json`` and ``.md`` are rewritten after every case, and a
re-run with the same ``--out`` skips the cases already there, so a long table
can be built across several sittings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.training_throughput import _machine

# (label, backbone, TrainConfig overrides)
CASES = [
    ("scratch", "mobilenet_v2", {"strategy": "scratch"}),
    ("linear probe (feature-extraction, 100 epochs)", "mobilenet_v2",
     {"strategy": "feature-extraction", "epochs": 100}),
    ("fine-tune", "mobilenet_v2", {"strategy": "fine-tune"}),
    ("two-phase", "mobilenet_v2", {"strategy": "two-phase"}),
    ("lp-ft (default)", "mobilenet_v2", {"strategy": "lp-ft"}),
]
FIRST_SEED = 42
EXTRA_SEEDS = (1, 2, 3, 4)


def _key(row: dict) -> tuple:
    return row["data"], row["case"], row["seed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help="dataset folder or builtin (repeatable; "
                                                        "default: fashion-mnist)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the best two cases by validation accuracy")
    parser.add_argument("--only", action="append", metavar="CASE", help="run just these cases (repeatable), by "
                        f"label: {', '.join(label for label, _, _ in CASES)}")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    datasets = args.data or ["fashion-mnist"]
    if not 1 <= args.seeds <= 1 + len(EXTRA_SEEDS):
        parser.error(f"--seeds must be between 1 and {1 + len(EXTRA_SEEDS)}")
    cases = [c for c in CASES if not args.only or c[0] in args.only]
    if not cases:
        parser.error(f"--only {args.only} matches no case; cases: {[label for label, _, _ in CASES]}")

    saved = args.out / "strategy_table.json"
    rows = json.loads(saved.read_text())["rows"] if saved.is_file() else []
    with tempfile.TemporaryDirectory(prefix="ftx-strategies-") as tmp:
        for data in datasets:
            for case in cases:
                _run(case, data, FIRST_SEED, rows, Path(tmp), args)
            firsts = [r for r in rows if r["data"] == data and r["seed"] == FIRST_SEED
                      and r["case"] in {c[0] for c in cases}]
            best = sorted(firsts, key=lambda r: -r["validation_accuracy"])[:2]
            for row in best:
                case = next(c for c in cases if c[0] == row["case"])
                for seed in EXTRA_SEEDS[: args.seeds - 1]:
                    _run(case, data, seed, rows, Path(tmp), args)


def _run(case: tuple, data: str, seed: int, rows: list[dict], tmp: Path, args: argparse.Namespace) -> None:
    from training.config import TrainConfig
    from training.train import train

    label, backbone, overrides = case
    if any(_key(r) == (data, label, seed) for r in rows):
        return
    config = TrainConfig(data=data, backbone=backbone, seed=seed,
                         out=str(tmp / f"{len(rows)}-{overrides['strategy']}-{seed}"), **overrides)
    started = time.perf_counter()
    result = train(config)
    metrics = result.metrics
    rows.append({"data": data, "case": label, "backbone": backbone, "strategy": overrides["strategy"], "seed": seed,
                 "epochs": len(result.history["loss"]),
                 "validation_accuracy": round(metrics["validation"]["accuracy"], 4),
                 "validation_images": metrics["validation"]["count"],
                 "test_accuracy": round(metrics["test"]["accuracy"], 4),
                 "test_images": metrics["test"]["count"],
                 "train_s": metrics["train_seconds"],
                 "wall_s": round(time.perf_counter() - started, 1)})
    print(rows[-1], flush=True)
    _write_report(rows, args)  # after every case: a crash later keeps what was measured


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _write_report(rows: list[dict], args: argparse.Namespace) -> None:
    report = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".strategy_table.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.out / "strategy_table.json")
    lines = [f"{report['date']}, {report['machine']}.", "",
             "| data | case | seeds | epochs | val acc (images) | test acc (images) | train s | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["data"], row["case"]), []).append(row)
    for (data, case), group in groups.items():
        seeds = ", ".join(str(r["seed"]) for r in group)
        lines.append(f"| {Path(data).name} | {case} | {seeds} | {group[0]['epochs']} | "
                     f"{_mean_std([r['validation_accuracy'] for r in group])} ({group[0]['validation_images']}) | "
                     f"{_mean_std([r['test_accuracy'] for r in group])} ({group[0]['test_images']}) | "
                     f"{statistics.mean(r['train_s'] for r in group):.0f} | "
                     f"{statistics.mean(r['wall_s'] for r in group):.0f} |")
    (args.out / "strategy_table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
