"""The run's whole test split, decoded once into a memory-mapped uint8 array every benchmark process reads.

Images go through the training pipeline (same decode, resize and ROI crop as
evaluation), or, in the edge install, through ``numpy_decode``, which gives the
same pixels without TensorFlow; 64 at a time, so 10,000 images at 224x224 never sit in memory as
float32 (6 GB). The arrays are cached under ``FTX_HOME/bench-inputs`` keyed by
the run's data and image settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.run_dir import RunDirError, TrainedRun
from training.atomic import staged_directory
from training.home import cache_dir

CHUNK = 64


@dataclass(frozen=True)
class SplitImages:
    directory: Path  # images.npy, labels.npy, files.json
    count: int
    split: str


def _key(run: TrainedRun, count: int | None) -> str:
    config = run.config
    identity = {"data": str(Path(config["data"]).expanduser().resolve()), "test_csv": config.get("test_csv"),
                "validation_split": config.get("validation_split"), "seed": config.get("seed"),
                "image_size": run.image_size, "roi_crop": bool(config.get("roi_crop")), "count": count}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def materialise(run: TrainedRun, count: int | None = None, progress: bool = False) -> SplitImages:
    """The first ``count`` (all when None) test images of ``run`` (validation images if it has no test set)."""
    directory = cache_dir("bench-inputs") / _key(run, count)
    if (directory / "files.json").is_file():
        meta = json.loads((directory / "meta.json").read_text())
        return SplitImages(directory, meta["count"], meta["split"])
    from training.data import load_splits

    config = run.config
    try:
        splits = load_splits(config["data"], validation_split=config["validation_split"], seed=config["seed"],
                             test_csv=Path(config["test_csv"]) if config.get("test_csv") else None)
    except (OSError, ValueError) as error:
        raise RunDirError(f"cannot read the run's data {config['data']!r}: {error}") from None
    records, split = (splits.test, "test") if splits.test else (splits.valid, "validation")
    if not records:
        raise RunDirError(f"the run's data {config['data']!r} has no test or validation images to benchmark on")
    records = records[:count] if count else records
    size = run.image_size
    from tqdm import tqdm

    with staged_directory(directory) as stage:
        images = np.lib.format.open_memmap(stage / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(records), size, size, 3))
        with tqdm(total=len(records), desc="test images", unit="img", disable=not progress, leave=False) as bar:
            for start in range(0, len(records), CHUNK):
                chunk = records[start:start + CHUNK]
                batch = _decode(chunk, size, bool(config.get("roi_crop")))
                images[start:start + len(chunk)] = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
                bar.update(len(chunk))
        images.flush()
        del images
        np.save(stage / "labels.npy", np.array([r.label for r in records], dtype=np.int16), allow_pickle=False)
        (stage / "files.json").write_text(json.dumps([str(r.path.resolve()) for r in records]))
        (stage / "meta.json").write_text(json.dumps({"count": len(records), "split": split, "run": str(run.path)}))
    return SplitImages(directory, len(records), split)


def _decode(records, size: int, crop_roi: bool) -> np.ndarray:
    """float32 [N, S, S, 3]: tf.data's parallel decode where TensorFlow is installed, else numpy_decode's."""
    from training.installs import has

    if has("tensorflow"):
        from training.phase_inputs import split_dataset

        return np.concatenate([x.numpy() for x, _ in split_dataset(records, size, len(records), crop_roi)])
    from training.data.numpy_decode import load_image

    return np.stack([load_image(r.path.read_bytes(), size, r.roi if crop_roi else None) for r in records])
