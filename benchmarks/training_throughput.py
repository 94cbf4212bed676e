"""Training throughput per strategy, and cached vs uncached feature extraction.

    python -m benchmarks.training_throughput [--data fashion-mnist] [--image-size 224] [--epochs 4]

Each strategy trains for ``--epochs`` epochs on the same data. The first epoch
(tracing, filling the tf.data cache) is excluded; the median of the others is
the per-epoch time. Writes ``training_throughput.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

CASES = [
    ("scratch", {"strategy": "scratch"}),
    ("feature-extraction (uncached)", {"strategy": "feature-extraction", "cache_features": False}),
    ("feature-extraction (cached)", {"strategy": "feature-extraction", "cache_features": True}),
    ("fine-tune", {"strategy": "fine-tune"}),
    ("two-phase", {"strategy": "two-phase"}),
]


def _machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()}"


def measure(data: str, backbone: str, image_size: int, epochs: int, batch_size: int) -> list[dict]:
    from training.config import TrainConfig
    from training.train import train

    rows = []
    with tempfile.TemporaryDirectory(prefix="ftx-bench-") as tmp:
        for label, overrides in CASES:
            config = TrainConfig(data=data, backbone=backbone, image_size=image_size, epochs=epochs,
                                 fine_tune_epochs=epochs, batch_size=batch_size, max_test_images=64,
                                 out=str(Path(tmp) / label.replace(" ", "_")), **overrides)
            started = time.perf_counter()
            result = train(config)
            epoch_seconds = result.history["epoch_seconds"]
            start = result.metrics.get("fine_tune_start_epoch") or 0
            if start:  # two-phase: time the fine-tuning phase, whose epochs run the backbone
                label, epoch_seconds = f"{label}: fine-tune phase", epoch_seconds[start:]
            steady = epoch_seconds[1:] or epoch_seconds
            rows.append({
                "case": label,
                "epochs": len(epoch_seconds),
                "first_epoch_s": round(epoch_seconds[0], 3),
                "median_epoch_s": round(statistics.median(steady), 3),
                "images_per_s": round(result.metrics["dataset"]["train"] / statistics.median(steady), 1),
                "train_wall_s": round(result.metrics["train_seconds"], 1),
                "run_wall_s": round(time.perf_counter() - started, 1),
            })
    return rows


def write_report(rows: list[dict], settings: dict, out: Path) -> Path:
    by_case = {row["case"]: row for row in rows}
    ratio = (by_case["feature-extraction (uncached)"]["median_epoch_s"]
             / by_case["feature-extraction (cached)"]["median_epoch_s"])
    report = {"settings": settings, "machine": _machine(), "date": time.strftime("%Y-%m-%d"), "rows": rows,
              "cached_vs_uncached_epoch_speedup": round(ratio, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    header = "| case | epochs | first epoch (s) | median epoch (s) | images/s | train wall (s) |\n|---|---|---|---|---|---|\n"
    body = "".join(f"| {r['case']} | {r['epochs']} | {r['first_epoch_s']} | {r['median_epoch_s']} | "
                   f"{r['images_per_s']} | {r['train_wall_s']} |\n" for r in rows)
    text = (f"# Training throughput\n\n{report['date']}, {report['machine']}.\nSettings: {settings}\n\n"
            f"{header}{body}\nCached vs uncached feature extraction, per epoch: **{ratio:.1f}x** faster "
            "(goal: at least 5x).\n")
    (out / "training_throughput.md").write_text(text)
    return out / "training_throughput.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    rows = measure(args.data, args.backbone, args.image_size, args.epochs, args.batch_size)
    print(write_report(rows, settings, args.out).read_text())


if __name__ == "__main__":
    main()
