"""Build the edge tests' model with the full install: ``python tests/edge/make_export.py ROOT``.

ROOT gets ``data/`` (the tiny dataset), ``run/`` (a trained run) and
``models/tiny/1`` (SavedModel, ONNX and TFLite, blessed). The edge venv cannot
train or export, so ``make test-edge`` runs this first with the full venv and
hands ROOT to the edge tests as FTX_EDGE_EXPORT.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make(root: Path, run: Path | None = None) -> Path:
    """The export's base path ``root/models/tiny``; trains into ``root/run`` unless ``run`` is given."""
    from export.config import ExportConfig
    from export.pipeline import export_run

    if run is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from conftest import make_tiny_dataset
        from training.config import TrainConfig
        from training.train import train

        data = make_tiny_dataset(root / "data")
        run = train(TrainConfig(data=str(data), out=str(root / "run"), backbone="mobilenet_v2", image_size=32,
                                strategy="feature-extraction", epochs=30, batch_size=8, seed=3,
                                learning_rate=1e-2)).run_dir
    result = export_run(ExportConfig(run_dir=str(run), name="tiny", out=str(root / "models"),
                                     formats=["onnx", "tflite"], parity_images=12).validate())
    if not result.blessed:
        raise SystemExit(f"the edge tests' export was not blessed: {result.verdict.reasons}")
    return root / "models" / "tiny"


if __name__ == "__main__":
    print(make(Path(sys.argv[1])))
