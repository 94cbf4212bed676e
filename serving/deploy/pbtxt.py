"""Protobuf text format from plain Python values, for messages whose classes ftx does not carry.

Triton's ``ModelConfig`` is read by ``tritonserver`` from ``config.pbtxt``.
ftx has no copy of its descriptor (tritonclient, which ships one, is a test
dependency), so the config is built as nested dicts and lists and written
here; the tests parse every file with the real message. Field names and enum
values are the caller's: nothing here knows Triton's schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Enum:
    """An enum value, written bare (``TYPE_FP32``), where a string would be quoted."""

    name: str



def quote(text: str) -> str:
    """A text-format string literal: UTF-8 bytes, with quotes, backslashes and non-printing bytes escaped."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def scalar(value) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"no text-format scalar for {type(value).__name__} {value!r}")


def _message(fields: Mapping, depth: int) -> list[str]:
    pad = "  " * depth
    lines = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            inner = _message(value, depth + 1)
            lines += [f"{pad}{name} {{", *inner, f"{pad}}}"] if inner else [f"{pad}{name} {{ }}"]
        elif isinstance(value, Sequence) and not isinstance(value, str):
            if not value:
                continue
            if all(isinstance(item, Mapping) for item in value):
                lines.append(f"{pad}{name} [")
                for index, item in enumerate(value):
                    close = "}," if index < len(value) - 1 else "}"
                    lines += [f"{pad}  {{", *_message(item, depth + 2), f"{pad}  {close}"]
                lines.append(f"{pad}]")
            else:
                lines.append(f"{pad}{name}: [ {', '.join(scalar(item) for item in value)} ]")
        else:
            lines.append(f"{pad}{name}: {scalar(value)}")
    return lines


def to_text(fields: Mapping) -> str:
    """``{"name": "m", "input": [{"dims": [3]}], "dynamic_batching": {}}`` -> text format, one field a line.

    A mapping is a sub-message (an empty one is written ``{}`` and so set); a list of mappings is a repeated
    message (also how a map field is written: entries with ``key`` and ``value``); a list of scalars a packed
    list; an empty list or None is left out.
    """
    return "\n".join(_message(fields, 0)) + "\n"
