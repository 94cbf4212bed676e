"""IDX parsing on tiny synthetic files: shapes, magic numbers and counts are checked."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError
from training.data.idx import read_idx_images, read_idx_labels


def _write(path: Path, header: bytes, payload: bytes, *, compress: bool = True) -> Path:
    data = header + payload
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_images_and_labels_round_trip(tmp_path):
    images = np.arange(3 * 2 * 4, dtype=np.uint8).reshape(3, 2, 4)
    labels = np.array([9, 0, 4], np.uint8)
    image_file = _write(tmp_path / "i-idx3-ubyte.gz", struct.pack(">IIII", 0x803, 3, 2, 4), images.tobytes())
    label_file = _write(tmp_path / "l-idx1-ubyte.gz", struct.pack(">II", 0x801, 3), labels.tobytes())
    assert np.array_equal(read_idx_images(image_file), images)
    assert np.array_equal(read_idx_labels(label_file), labels)
    plain = _write(tmp_path / "l-idx1-ubyte", struct.pack(">II", 0x801, 3), labels.tobytes(), compress=False)
    assert np.array_equal(read_idx_labels(plain), labels)


def test_swapped_files_fail_on_the_magic_number(tmp_path):
    labels = _write(tmp_path / "l.gz", struct.pack(">II", 0x801, 2), b"\1\2")
    with pytest.raises(DataError, match=r"l.gz has magic number 0x00000801, expected 0x00000803"):
        read_idx_images(labels)


def test_counts_must_match_the_payload(tmp_path):
    short = _write(tmp_path / "i.gz", struct.pack(">IIII", 0x803, 3, 2, 2), bytes(11))
    with pytest.raises(DataError, match=r"header says 3x2x2 = 12 values but it holds 11"):
        read_idx_images(short)
    long = _write(tmp_path / "l.gz", struct.pack(">II", 0x801, 2), bytes(3))
    with pytest.raises(DataError, match=r"header says 2 = 2 values but it holds 3"):
        read_idx_labels(long)


def test_unreadable_files_are_clear_errors(tmp_path):
    stub = _write(tmp_path / "i.gz", b"\0\0\x08", b"")
    with pytest.raises(DataError, match=r"has 3 bytes, less than its 16-byte header"):
        read_idx_images(stub)
    not_gzip = tmp_path / "x.gz"
    not_gzip.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match=r"cannot read IDX file .*x.gz"):
        read_idx_labels(not_gzip)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(struct.pack(">II", 0x801, 4) + bytes(4))[:-10])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx_labels(cut)
