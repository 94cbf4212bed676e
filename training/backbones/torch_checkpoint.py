"""Read PyTorch ``state_dict`` checkpoints into numpy without torch.

Both on-disk formats are handled: the zip format (``archive/data.pkl`` plus one
raw little-endian file per storage) and the legacy format (a run of pickles
followed by the raw storages). ``pickle`` can run arbitrary code, so a
restricted unpickler resolves only the handful of names a tensor state dict
needs and refuses everything else with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint asks for a Python object outside the allow-list."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _StorageRef, offset: int, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _TensorRef, *_ignored: Any) -> _TensorRef:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the torch rebuild helpers, storage types and OrderedDict."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}  # every storage the pickle referenced

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise UnsafeCheckpointError(
            f"refusing to load {module}.{name} from a checkpoint: only tensor state dicts are allowed"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"unexpected storage type {storage_type!r}")
        return self.storages.setdefault(str(key), _StorageRef(str(key), storage_type.dtype, int(numel)))


def _materialise(ref: _TensorRef, raw: dict[str, bytes]) -> np.ndarray:
    """Copy the tensor's view out of its storage, after checking it stays inside it.

    ``as_strided`` does no bounds checks, so offsets and strides from the file
    are validated first: a corrupt or crafted file must not read stray memory.
    """
    if ref.storage.key not in raw:
        raise ValueError(f"checkpoint names storage {ref.storage.key!r} but does not contain it")
    storage = np.frombuffer(raw[ref.storage.key], dtype=ref.storage.dtype)
    if len(ref.size) != len(ref.stride) or any(s < 0 for s in (*ref.size, *ref.stride)) or ref.offset < 0:
        raise ValueError(f"tensor with invalid layout: size {ref.size}, stride {ref.stride}, offset {ref.offset}")
    if not ref.size:
        if ref.offset >= len(storage):
            raise ValueError(f"scalar at offset {ref.offset} outside a storage of {len(storage)} elements")
        return storage[ref.offset].copy()
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=storage.dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= len(storage):
        raise ValueError(f"tensor of size {ref.size} at offset {ref.offset} overruns its storage of "
                         f"{len(storage)} elements")
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset:], shape=ref.size, strides=tuple(s * storage.itemsize for s in ref.stride)
    )
    return np.ascontiguousarray(view).astype(view.dtype.newbyteorder("="), copy=False)


def _to_arrays(state: Any, raw: dict[str, bytes]) -> dict[str, np.ndarray]:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint holds a {type(state).__name__}, expected a state dict")
    return {str(k): _materialise(v, raw) for k, v in state.items() if isinstance(v, _TensorRef)}


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ValueError(f"{path}: zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]
        state = _RestrictedUnpickler(io.BytesIO(archive.read(pkl))).load()
        raw = {n[len(prefix) + len("data/"):]: archive.read(n) for n in names if n.startswith(prefix + "data/")}
    return _to_arrays(state, raw)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as handle:
        magic = _RestrictedUnpickler(handle).load()
        if magic != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch checkpoint (bad magic number)")
        _protocol = _RestrictedUnpickler(handle).load()
        _sys_info = _RestrictedUnpickler(handle).load()
        unpickler = _RestrictedUnpickler(handle)
        state = unpickler.load()
        refs = unpickler.storages
        keys = _RestrictedUnpickler(handle).load()
        raw: dict[str, bytes] = {}
        for key in keys:
            if key not in refs:
                raise ValueError(f"{path}: storage {key!r} is listed but never referenced")
            header = handle.read(8)
            if len(header) != 8:
                raise ValueError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", header)
            if numel < 0 or numel != refs[key].numel:
                raise ValueError(f"{path}: storage {key} has {numel} elements, expected {refs[key].numel}")
            dtype = refs[key].dtype
            raw[key] = handle.read(numel * dtype.itemsize)
            if len(raw[key]) != numel * dtype.itemsize:
                raise ValueError(f"{path}: truncated storage {key}")
    return _to_arrays(state, raw)


def load_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for every tensor in a torch checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)
