"""Real images from the run's own data, for parity checks, warmup and calibration.

Taken from the run's test split (else its validation split) through the
training pipeline, so every format is compared on exactly what the Keras
model saw in evaluation; the files' bytes come along for the bytes signatures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.run_dir import RunDirError, TrainedRun


@dataclass(frozen=True)
class Samples:
    images: np.ndarray  # float32 [N, S, S, 3], whole values 0-255, as the training pipeline made them
    uncropped: np.ndarray  # the same without the ROI crop: what the bytes signatures see (== images without --roi-crop)
    labels: np.ndarray  # int [N]
    encoded: tuple[bytes, ...]  # the files' bytes
    paths: tuple[Path, ...]
    split: str


def load_samples(run: TrainedRun, count: int, *, split: str = "test", seed: int = 0) -> Samples:
    """``count`` seeded, reproducible images of ``split``.

    ``split`` is "test" (parity, warmup; falls back to the validation split when
    the run has no test set), "train" (calibration for int8) or "valid"
    (choosing among int8 candidates; falls back to the training split when the
    run has no validation set).
    """
    from training.data import load_splits
    from training.evaluate import sample_indices
    from training.phase_inputs import record_images

    if count < 1:
        raise ValueError(f"sample count must be >= 1, got {count}")
    config = run.config
    try:
        splits = load_splits(config["data"], validation_split=config["validation_split"], seed=config["seed"],
                             test_csv=Path(config["test_csv"]) if config.get("test_csv") else None)
    except (OSError, ValueError) as error:
        raise RunDirError(f"cannot read the run's data {config['data']!r} for sample images: {error}") from None
    if split == "train":
        records, used = splits.train, "train"
    elif split == "test":
        records, used = (splits.test, "test") if splits.test else (splits.valid, "validation")
    elif split == "valid":
        records, used = (splits.valid, "validation") if splits.valid else (splits.train, "train")
    else:
        raise ValueError(f"split must be 'test', 'valid' or 'train', got {split!r}")
    if not records:
        wanted = {"train": "training", "test": "test or validation", "valid": "validation or training"}[split]
        raise RunDirError(f"the run's data {config['data']!r} has no {wanted} images to use")
    chosen = [records[i] for i in sample_indices(len(records), count, seed)]
    images = record_images(chosen, run.image_size, bool(config.get("roi_crop"))).astype(np.float32)
    uncropped = record_images(chosen, run.image_size, False).astype(np.float32) if config.get("roi_crop") else images
    return Samples(images=images, uncropped=uncropped, labels=np.array([r.label for r in chosen]),
                   encoded=tuple(r.path.read_bytes() for r in chosen), paths=tuple(r.path for r in chosen),
                   split=used)
