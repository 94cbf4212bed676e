"""Read a finished training run: the inputs of every export step.

A run directory is complete only when ``ftx train`` renamed it into place, so
anything missing here means the user pointed at the wrong folder (or at a
``.partial`` one): say which file is missing and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("model.keras", "saved_model/saved_model.pb", "saved_model/variables/variables.index", "labels.txt",
            "config.json", "metrics.json")


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
    """Check ``path`` is a complete, readable run; every fault is one line naming the file and what is wrong."""
    path = Path(path).expanduser()
    if path.name.endswith(".partial"):
        raise RunDirError(f"{path} is an unfinished training run; finish it (rerun `ftx train` with the same "
                          "options) before exporting")
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise RunDirError(f"{path} is not a complete ftx run: missing {', '.join(missing)}")
    empty = [name for name in REQUIRED if (path / name).stat().st_size == 0]
    if empty:
        raise RunDirError(f"{path}/{empty[0]} is empty (a copy or a disk that failed?); re-train or restore it")
    try:
        class_names = tuple(line for line in (path / "labels.txt").read_text(encoding="utf-8").splitlines() if line)
    except UnicodeDecodeError as error:
        raise RunDirError(f"{path}/labels.txt is not UTF-8 text: {error.reason} at byte {error.start}") from None
    config = _json_object(path / "config.json")
    metrics = _json_object(path / "metrics.json")
    if len(class_names) < 2:
        raise RunDirError(f"{path}/labels.txt lists {len(class_names)} class(es); expected at least 2")
    if not isinstance(config.get("image_size"), int):
        raise RunDirError(f"{path}/config.json has no resolved image_size; re-train with this ftx version")
    _check_keras_file(path / "model.keras")
    _check_variables(path / "saved_model" / "variables")
    image_size, classes = _saved_model_io(path / "saved_model" / "saved_model.pb")
    if classes not in (None, len(class_names)):
        raise RunDirError(f"{path}/labels.txt lists {len(class_names)} classes, but the model has {classes} "
                          "outputs (saved_model/saved_model.pb): the labels belong to another run")
    if image_size not in (None, config["image_size"]):
        raise RunDirError(f"{path}/config.json says image_size {config['image_size']}, but the model takes "
                          f"{image_size} px images (saved_model/saved_model.pb): the files come from different runs")
    return TrainedRun(path=path, class_names=class_names, config=config, metrics=metrics)


def _json_object(file: Path) -> dict:
    try:
        value = json.loads(file.read_bytes())
    except json.JSONDecodeError as error:
        raise RunDirError(f"{file} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
                          "truncated or overwritten?") from None
    except UnicodeDecodeError as error:
        raise RunDirError(f"{file} is not UTF-8 JSON: {error.reason} at byte {error.start}") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{file} holds a JSON {type(value).__name__}, not the object ftx writes")
    return value


def _check_keras_file(file: Path) -> None:
    """A Keras 3 ``.keras`` file is a zip holding config.json and the weights; truncation breaks the zip."""
    import zipfile

    if not zipfile.is_zipfile(file):
        raise RunDirError(f"{file} is not a Keras model file (not a zip archive: truncated or garbage)")
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise RunDirError(f"{file} is a damaged zip archive: {error}") from None
    if damaged is not None:
        raise RunDirError(f"{file} is damaged: {damaged} inside it fails its checksum")
    if "config.json" not in names or not any(name.endswith(".weights.h5") for name in names):
        raise RunDirError(f"{file} is a zip archive, but not a Keras model (no config.json and weights inside)")


def _saved_model_io(file: Path) -> tuple[int | None, int | None]:
    """(image size, classes) of the run's SavedModel ``serving_default``, read without TensorFlow."""
    from google.protobuf.message import DecodeError

    from serving.generated import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(file.read_bytes())
    except DecodeError:
        raise RunDirError(f"{file} is not a SavedModel (it does not parse: truncated or garbage)") from None
    signature = next((graph.signature_def["serving_default"] for graph in saved.meta_graphs
                      if "serving_default" in graph.signature_def), None)
    if signature is None or len(signature.inputs) != 1 or len(signature.outputs) != 1:
        raise RunDirError(f"{file} has no serving_default signature with one input and one output")
    (inputs,), (outputs,) = signature.inputs.values(), signature.outputs.values()
    input_dims = [d.size for d in inputs.tensor_shape.dim]
    output_dims = [d.size for d in outputs.tensor_shape.dim]
    image_size = input_dims[1] if len(input_dims) == 4 and input_dims[1] > 0 else None
    classes = output_dims[-1] if output_dims and output_dims[-1] > 0 else None
    return image_size, classes


def _check_variables(folder: Path) -> None:
    """Every data shard the SavedModel's variables.index lists is there and holds the bytes the index needs."""
    from export.variables_index import VariablesIndexError, shard_sizes

    index = folder / "variables.index"
    try:
        needed = shard_sizes(index.read_bytes())
    except VariablesIndexError as error:
        raise RunDirError(f"{index} is not a readable variables index: {error}") from None
    shards = sorted(folder.glob("variables.data-*-of-*"))
    count = int(shards[0].name.rsplit("-of-", 1)[1]) if shards else max(needed, default=0) + 1
    for shard, size in sorted(needed.items()):
        data = folder / f"variables.data-{shard:05d}-of-{count:05d}"
        if not data.is_file():
            raise RunDirError(f"{data} is missing; variables.index lists variables in it")
        if data.stat().st_size < size:
            raise RunDirError(f"{data} is {data.stat().st_size} bytes, but variables.index needs {size}: truncated "
                              "(a copy or a disk that failed?); re-train or restore it")
