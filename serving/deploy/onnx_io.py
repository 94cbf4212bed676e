"""The inputs and outputs of a ``model.onnx`` as ONNX Runtime loads it: names, element types, shapes.

Triton's ONNX Runtime backend checks its config against the same session
view, so it is read from ONNX Runtime itself (present in the edge install,
unlike the ``onnx`` package), not from what the exporter meant to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.tfs_config import ServingConfigError
from training.installs import has, lacking


@dataclass(frozen=True)
class OnnxTensor:
    name: str
    element_type: str  # ONNX Runtime's spelling: tensor(float), tensor(int64), ...
    shape: tuple[int | None, ...]  # None where the dimension is symbolic ('batch') or unknown

    @property
    def batched(self) -> bool:
        """Whether the first dimension is free, as Triton's batching (max_batch_size >= 1) needs."""
        return bool(self.shape) and self.shape[0] is None


def _dims(shape) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in shape)


def model_io(path: Path) -> tuple[list[OnnxTensor], list[OnnxTensor]]:
    """(inputs, outputs) of the model at ``path``, in the model's order."""
    if not has("onnxruntime"):
        raise ServingConfigError(f"reading {path.name}'s inputs and outputs {lacking('onnxruntime')}")
    from export.onnx_runtime import open_session

    try:
        session = open_session(path, threads=1)
    except Exception as error:  # ONNX Runtime raises its own exception types for a bad file
        raise ServingConfigError(f"ONNX Runtime cannot load {path}: {error}") from None
    tensors = lambda items: [OnnxTensor(t.name, t.type, _dims(t.shape)) for t in items]  # noqa: E731
    return tensors(session.get_inputs()), tensors(session.get_outputs())
