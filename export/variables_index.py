"""How many bytes each shard of a SavedModel's ``variables/`` must hold, read from ``variables.index`` without
TensorFlow.

The index is a TensorFlow table file (``tensorflow/core/lib/io/table*``, the
LevelDB layout): a 48-byte footer with the table's magic number points to an
index block, whose entries point to data blocks, whose entries map each
variable's name to a ``BundleEntryProto`` (``tensor_bundle.proto``) giving its
shard, offset and size. A run whose ``variables.data-*`` files are shorter
than that was truncated; ``ftx export`` would otherwise fail deep inside
TensorFlow with a message that names no file. Tensor bundles are written
uncompressed; a block that says otherwise is reported as unreadable.
"""

from __future__ import annotations

import struct

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type byte + crc32c
# BundleEntryProto field numbers: shard_id, offset, size
SHARD_ID, OFFSET, SIZE = 3, 4, 5


class VariablesIndexError(ValueError):
    """The index file is not a readable tensor-bundle index; the message says what is wrong."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data) or shift > 63:
            raise VariablesIndexError("a number runs past the end of its block")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return value, position
        shift += 7


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + BLOCK_TRAILER_BYTES > len(data):
        raise VariablesIndexError(f"a block at byte {offset} runs past the end of the file")
    if data[offset + size] != 0:
        raise VariablesIndexError(f"a block at byte {offset} is compressed (type {data[offset + size]}); ftx reads none")
    return data[offset:offset + size]


def _entries(block: bytes):
    """(key, value) of a table block, undoing its prefix compression."""
    if len(block) < 4:
        raise VariablesIndexError("a block is shorter than its restart count")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (restarts + 1)
    if end < 0:
        raise VariablesIndexError("a block's restart array is larger than the block")
    position, key = 0, b""
    while position < end:
        shared, position = _varint(block, position)
        unshared, position = _varint(block, position)
        length, position = _varint(block, position)
        if shared > len(key) or position + unshared + length > end:
            raise VariablesIndexError("an entry runs past the end of its block")
        key = key[:shared] + block[position:position + unshared]
        position += unshared
        yield key, block[position:position + length]
        position += length


def _entry_extent(value: bytes) -> tuple[int, int]:
    """(shard, end offset) of one BundleEntryProto, read from its varint fields."""
    fields = {SHARD_ID: 0, OFFSET: 0, SIZE: 0}
    position = 0
    while position < len(value):
        tag, position = _varint(value, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            number_value, position = _varint(value, position)
            if number in fields:
                fields[number] = number_value
        elif wire == 2:
            length, position = _varint(value, position)
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise VariablesIndexError(f"a variable's entry has wire type {wire}")
    return fields[SHARD_ID], fields[OFFSET] + fields[SIZE]


def shard_sizes(index: bytes) -> dict[int, int]:
    """Shard number -> the least size its data file must have, for every variable the index lists."""
    if len(index) < FOOTER_BYTES or struct.unpack_from("<Q", index, len(index) - 8)[0] != TABLE_MAGIC:
        raise VariablesIndexError("it does not end with a table's magic number (truncated or not an index)")
    footer = index[-FOOTER_BYTES:]
    _, position = _varint(footer, 0)  # the metaindex handle: unused
    _, position = _varint(footer, position)
    index_offset, position = _varint(footer, position)
    index_size, _ = _varint(footer, position)
    needed: dict[int, int] = {}
    for _, handle in _entries(_block(index, index_offset, index_size)):
        offset, position = _varint(handle, 0)
        size, _ = _varint(handle, position)
        for key, value in _entries(_block(index, offset, size)):
            if key == b"":  # the BundleHeaderProto
                continue
            shard, end = _entry_extent(value)
            needed[shard] = max(needed.get(shard, 0), end)
    return needed
