"""Test accuracy and wall time per training strategy on one dataset.

    python -m benchmarks.strategy_table [--data fashion-mnist] [--epochs 10] [--out benchmarks/results]

Runs scratch, feature-extraction (also for 100 epochs: on cached features that
costs seconds), fine-tune and two-phase with ``mobilenet_v2`` and fine-tune with
``efficientnet_lite0`` (full test set, default settings otherwise) and writes
``strategy_table.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.training_throughput import _machine

# (backbone, strategy, epochs override): the cached head trains in seconds, so it also gets a long run
CASES = [
    ("mobilenet_v2", "scratch", None),
    ("mobilenet_v2", "feature-extraction", None),
    ("mobilenet_v2", "feature-extraction", 100),
    ("mobilenet_v2", "fine-tune", None),
    ("mobilenet_v2", "two-phase", None),
    ("efficientnet_lite0", "fine-tune", None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--only", action="append", metavar="BACKBONE:STRATEGY[:EPOCHS]",
                        help="run just these cases (repeatable), e.g. efficientnet_lite0:fine-tune")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    cases = CASES
    if args.only:
        wanted = {tuple(item.split(":")) for item in args.only}
        cases = [c for c in CASES if (c[0], c[1]) in wanted or (c[0], c[1], str(c[2])) in wanted]
        if not cases:
            parser.error(f"--only {args.only} matches no case; cases: {[f'{b}:{s}:{e}' for b, s, e in CASES]}")

    from training.config import TrainConfig
    from training.train import train

    rows = []
    with tempfile.TemporaryDirectory(prefix="ftx-strategies-") as tmp:
        for backbone, strategy, epochs in cases:
            config = TrainConfig(data=args.data, backbone=backbone, strategy=strategy, epochs=epochs or args.epochs,
                                 fine_tune_epochs=args.epochs, image_size=args.image_size,
                                 out=str(Path(tmp) / f"{backbone}-{strategy}-{epochs}"))
            started = time.perf_counter()
            result = train(config)
            metrics = result.metrics
            rows.append({"backbone": backbone, "strategy": strategy,
                         "epochs": len(result.history["loss"]),
                         "validation_accuracy": round(metrics["validation"]["accuracy"], 4),
                         "test_accuracy": round(metrics["test"]["accuracy"], 4),
                         "test_images": metrics["test"]["count"],
                         "train_s": metrics["train_seconds"],
                         "wall_s": round(time.perf_counter() - started, 1)})
            print(rows[-1], flush=True)
            _write_report(rows, args)  # after every case: a crash later keeps what was measured


def _write_report(rows: list[dict], args: argparse.Namespace) -> None:
    report = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(), "settings": vars(args) | {"out": str(args.out)},
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "strategy_table.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Strategies on {args.data}\n", f"{report['date']}, {report['machine']}.\n",
             "| backbone | strategy | epochs | val acc | test acc (images) | train s | wall s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['strategy']} | {r['epochs']} | {r['validation_accuracy']:.4f} | "
              f"{r['test_accuracy']:.4f} ({r['test_images']}) | {r['train_s']:.0f} | {r['wall_s']:.0f} |" for r in rows]
    (args.out / "strategy_table.md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__":
    main()
