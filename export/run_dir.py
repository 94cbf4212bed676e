"""Read a finished training run: the inputs of every export step.

A run directory is complete only when ``ftx train`` renamed it into place, so
anything missing here means the user pointed at the wrong folder (or at a
``.partial`` one): say which file is missing and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("model.keras", "saved_model/saved_model.pb", "labels.txt", "config.json", "metrics.json")


class RunDirError(ValueError):
    """The directory is not a complete ftx training run."""


@dataclass(frozen=True)
class TrainedRun:
    """What export needs from a run, read once."""

    path: Path
    class_names: tuple[str, ...]
    config: dict
    metrics: dict

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def backbone(self) -> str:
        return str(self.config["backbone"])

    @property
    def keras_path(self) -> Path:
        return self.path / "model.keras"

    @property
    def saved_model_path(self) -> Path:
        return self.path / "saved_model"


def read_run(path: Path | str) -> TrainedRun:
    """Check ``path`` is a complete run and read its labels and config."""
    path = Path(path).expanduser()
    if path.name.endswith(".partial"):
        raise RunDirError(f"{path} is an unfinished training run; finish it (rerun `ftx train` with the same "
                          "options) before exporting")
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise RunDirError(f"{path} is not a complete ftx run: missing {', '.join(missing)}")
    class_names = tuple(line for line in (path / "labels.txt").read_text(encoding="utf-8").splitlines() if line)
    try:
        config = json.loads((path / "config.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}: unreadable run metadata: {error}") from None
    if len(class_names) < 2:
        raise RunDirError(f"{path}/labels.txt lists {len(class_names)} class(es); expected at least 2")
    if not isinstance(config.get("image_size"), int):
        raise RunDirError(f"{path}/config.json has no resolved image_size; re-train with this ftx version")
    return TrainedRun(path=path, class_names=class_names, config=config, metrics=metrics)
