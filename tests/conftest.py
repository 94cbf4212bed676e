"""Shared test set-up: quiet TensorFlow, a per-session ftx cache, the tests folder importable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).parent))


import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY_COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def make_tiny_dataset(root: Path, train_per_class: int = 8, test_per_class: int = 4, seed: int = 0) -> Path:
    """Noisy solid-colour images in ``train/<class>`` and ``test/<class>``: learnable in a few steps."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for name, colour in TINY_COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished, confident training run on the tiny dataset (mobilenet_v2 at 32 px, cached feature extraction)."""
    from training.config import TrainConfig
    from training.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(data=str(tiny_dataset), out=str(out), backbone="mobilenet_v2", image_size=32,
                         strategy="feature-extraction", epochs=30, batch_size=8, seed=3,
                         learning_rate=1e-2)
    return train(config).run_dir


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tmp_path_factory) -> Path:
    """Model 'tiny' exported once (SavedModel + ONNX, version 1) for every serving test: its base path.

    Read-only: a test that changes a version copies it first.
    """
    from export.config import ExportConfig
    from export.pipeline import export_run

    root = tmp_path_factory.mktemp("exports")
    result = export_run(ExportConfig(run_dir=str(tiny_run), name="tiny", out=str(root), formats=["onnx"],
                                     parity_images=12).validate())
    assert result.blessed and result.directory == root / "tiny" / "1", result
    return root / "tiny"
