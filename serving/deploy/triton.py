"""A Triton model repository from the newest blessed ONNX export: ``NAME/config.pbtxt``, ``NAME/<version>/model.onnx``.

The config (Triton's ModelConfig, text format) states what ONNX Runtime reads
from the model: input and output names, element types and dims without the
batch dimension (a ``[batch]`` output becomes ``dims: [1]`` reshaped to
``[]``, as Triton requires). It pins the one version it describes (its dims
and labels are that version's), batches dynamically on the same sizes and
wait as TF Serving's batching config, warms up on zeros at batch 1, and gives
``probabilities`` the export's ``labels.txt`` so Triton's classification
extension answers class names. The model file is hard-linked from the export
where the file system allows (no second copy of the weights), else copied;
both are verified against the export manifest's sha256 first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from export.manifest import sha256_file
from serving.deploy import pbtxt
from serving.deploy.onnx_io import OnnxTensor, model_io
from serving.errors import ServingError
from serving.servable import LABELS_FILE, read_labels, read_manifest, verify_files
from serving.tfs_config import BatchingSettings, ServingConfigError
from training.atomic import staged_directory, write_text

PLATFORM = "onnxruntime_onnx"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
LABELLED_OUTPUT = "probabilities"  # ftx's model.onnx: probabilities [batch, classes], class_ids [batch]
DATA_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
              "tensor(bfloat16)": "TYPE_BF16", "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING",
              **{f"tensor({t})": f"TYPE_{t.upper()}" for t in ("int8", "int16", "int32", "int64", "uint8", "uint16",
                                                                "uint32", "uint64")}}


@dataclass(frozen=True)
class TritonBatching:
    """Triton's dynamic batcher, from TF Serving's batching settings so both servers batch alike."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_microseconds: int

    @classmethod
    def like(cls, batching: BatchingSettings, max_batch_size: int | None = None) -> "TritonBatching":
        """TF Serving's padded sizes (GPU) up to the maximum, or the maximum alone (CPU: no padding)."""
        largest = max_batch_size or batching.max_batch_size
        sizes = sorted({size for size in batching.allowed_batch_sizes if size < largest} | {largest})
        return cls(largest, tuple(sizes), batching.batch_timeout_micros)


def _dims(tensor: OnnxTensor) -> list[int]:
    return [d if d is not None else -1 for d in tensor.shape[1:]] or [1]


def _tensor(tensor: OnnxTensor, labels: bool = False) -> dict:
    if tensor.element_type not in DATA_TYPES:
        raise ServingConfigError(f"{MODEL_FILE}: {tensor.name!r} is {tensor.element_type}, which Triton has no "
                                 "type for")
    if not tensor.batched:
        raise ServingConfigError(f"{MODEL_FILE}: {tensor.name!r} has shape {list(tensor.shape)}; Triton's batching "
                                 "needs a free first (batch) dimension")
    fields: dict = {"name": tensor.name, "data_type": pbtxt.Enum(DATA_TYPES[tensor.element_type]),
                    "dims": _dims(tensor)}
    if len(tensor.shape) == 1:  # [batch]: Triton's API needs a dim, the model has none
        fields["reshape"] = {"shape": []}
    if labels:
        fields["label_filename"] = LABELS_FILE
    return fields


def _warmup_dims(tensor: OnnxTensor, image_shape: list) -> list[int]:
    """Concrete dims for the zeros Triton warms up on: the model's, free ones from the manifest's image shape."""
    known = list(image_shape[1:]) if len(image_shape) == len(tensor.shape) else []
    dims = []
    for index, dim in enumerate(tensor.shape[1:]):
        if dim is None:
            dim = known[index] if index < len(known) else None
        if not isinstance(dim, int) or dim < 1:
            raise ServingConfigError(f"{MODEL_FILE}: no concrete warm-up shape for input {tensor.name!r} "
                                     f"{list(tensor.shape)}")
        dims.append(dim)
    return dims or [1]


def model_config(name: str, version: int, inputs: list[OnnxTensor], outputs: list[OnnxTensor],
                 image_shape: list, batching: TritonBatching, device: str) -> dict:
    """The ModelConfig fields; ``image_shape`` (the manifest's [None, H, W, 3]) fills free dims for warm-up."""
    if LABELLED_OUTPUT not in [o.name for o in outputs]:
        raise ServingConfigError(f"{MODEL_FILE} has no {LABELLED_OUTPUT!r} output (outputs: "
                                 f"{[o.name for o in outputs]}): not an ftx export")
    input_fields = [_tensor(tensor) for tensor in inputs]
    warmup = {field["name"]: {"data_type": field["data_type"], "dims": _warmup_dims(tensor, image_shape),
                              "zero_data": True} for field, tensor in zip(input_fields, inputs)}
    return {
        "name": name,
        "platform": PLATFORM,
        "max_batch_size": batching.max_batch_size,
        "version_policy": {"specific": {"versions": [version]}},
        "input": input_fields,
        "output": [_tensor(tensor, labels=tensor.name == LABELLED_OUTPUT) for tensor in outputs],
        "instance_group": [{"kind": pbtxt.Enum("KIND_GPU" if device == "gpu" else "KIND_CPU"), "count": 1}],
        "dynamic_batching": {"preferred_batch_size": list(batching.preferred_batch_sizes),
                             "max_queue_delay_microseconds": batching.max_queue_delay_microseconds},
        "model_warmup": [{"name": "zeros", "batch_size": 1,
                          "inputs": [{"key": key, "value": value} for key, value in warmup.items()]}],
    }


def link_or_copy(source: Path, destination: Path) -> None:
    """``destination`` becomes ``source``'s content at once: hard link or copy under a temporary name, renamed."""
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed there
            shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def place_model(source: Path, version_dir: Path) -> Path:
    """``version_dir/model.onnx``; a new version directory appears whole (Triton may be polling the repository)."""
    if version_dir.is_dir():
        link_or_copy(source, version_dir / MODEL_FILE)
    else:
        with staged_directory(version_dir) as stage:
            link_or_copy(source, stage / MODEL_FILE)
    return version_dir / MODEL_FILE


def _verified_export(version_dir: Path) -> dict:
    """The manifest, once model.onnx and labels.txt match their listed sizes and sha256."""
    try:
        manifest = read_manifest(version_dir)
        verify_files(version_dir, manifest, (MODEL_FILE, LABELS_FILE))
    except ServingError as error:
        raise ServingConfigError(error.message) from None
    return manifest


def _labels(version_dir: Path, manifest: dict, outputs: list[OnnxTensor]) -> str:
    classes = next(o for o in outputs if o.name == LABELLED_OUTPUT).shape[-1]
    if classes is None:
        raise ServingConfigError(f"{MODEL_FILE}'s {LABELLED_OUTPUT!r} output has no fixed class count")
    try:
        return "\n".join(read_labels(version_dir, manifest, classes)) + "\n"
    except ServingError as error:
        raise ServingConfigError(error.message) from None


def write_model(repository: Path, name: str, version_dir: Path, version: int, batching: TritonBatching,
                device: str) -> Path:
    """Repository entry ``repository/name`` for the export at ``version_dir``; returns its config.pbtxt."""
    manifest = _verified_export(version_dir)
    inputs, outputs = model_io(version_dir / MODEL_FILE)
    config = model_config(name, version, inputs, outputs, manifest.get("input", {}).get("shape", []), batching,
                          device)
    label_text = _labels(version_dir, manifest, outputs)
    model_dir = repository / name
    placed = place_model(version_dir / MODEL_FILE, model_dir / str(version))
    listed = next(entry["sha256"] for entry in manifest["files"] if entry.get("path") == MODEL_FILE)
    if sha256_file(placed) != listed:
        raise ServingConfigError(f"{placed} does not match {version_dir / MODEL_FILE}'s sha256 in its manifest")
    text = pbtxt.to_text(config)
    for path, content in ((model_dir / LABELS_FILE, label_text), (model_dir / CONFIG_FILE, text)):  # config last
        write_text(path, content)
        if path.read_text(encoding="utf-8") != content:
            raise ServingConfigError(f"{path} does not read back as written")
    return model_dir / CONFIG_FILE
