"""Reading MNIST-style IDX files (``*-idx3-ubyte.gz`` images, ``*-idx1-ubyte.gz`` labels).

The header is a big-endian magic number (0x00000803 for uint8 images of rank 3,
0x00000801 for uint8 labels of rank 1) and one count per dimension; the data
follow as raw bytes. Both are checked so that a truncated download or a
swapped file is a clear error rather than a silently misshapen array.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from training.data.records import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {error}") from error


def _parse(path: Path, magic: int, rank: int) -> np.ndarray:
    raw = _read(path)
    header = 4 + 4 * rank
    if len(raw) >= 4 and (found := struct.unpack(">I", raw[:4])[0]) != magic:
        raise DataError(f"IDX file {path} has magic number {found:#010x}, expected {magic:#010x}")
    if len(raw) < header:
        raise DataError(f"IDX file {path} has {len(raw)} bytes, less than its {header}-byte header")
    dims = struct.unpack(f">{rank}I", raw[4:header])
    data = np.frombuffer(raw, np.uint8, offset=header)
    expected = int(np.prod(dims))
    if data.size != expected:
        shape = "x".join(str(d) for d in dims)
        raise DataError(f"IDX file {path} header says {shape} = {expected} values but it holds {data.size}")
    return data.reshape(dims)


def read_idx_images(path: Path) -> np.ndarray:
    """``uint8 [n, rows, cols]`` from an IDX image file (gzipped when its name ends in .gz)."""
    return _parse(Path(path), IMAGES_MAGIC, rank=3)


def read_idx_labels(path: Path) -> np.ndarray:
    """``uint8 [n]`` from an IDX label file (gzipped when its name ends in .gz)."""
    return _parse(Path(path), LABELS_MAGIC, rank=1)
