"""summary.md as a terminal shows it well: tables aligned, no Markdown syntax, plots named instead of linked.

``ftx bench`` used to print the Markdown itself (``|---|`` rows,
``![serving](serving.png)``); the file stays Markdown for readers that render it.
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)]+)\)$")
_SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _plain(text: str) -> str:
    """Inline Markdown off: code quotes and bold markers."""
    return text.replace("**", "").replace("`", "")


def _table(rows: list[str]) -> list[str]:
    cells = [[_plain(cell) for cell in _cells(row)] for row in rows if not _SEPARATOR.match(row.strip())]
    width = max(len(row) for row in cells)
    cells = [row + [""] * (width - len(row)) for row in cells]
    sizes = [max(len(row[i]) for row in cells) for i in range(width)]
    return ["  ".join(cell.ljust(size) for cell, size in zip(row, sizes)).rstrip() for row in cells]


def for_terminal(markdown: str) -> str:
    out: list[str] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append(lines[index])
                index += 1
            out += _table(block)
            continue
        image = _IMAGE.match(line.strip())
        if image:
            out.append(f"(plot: {image.group(2)})")
        elif line.startswith("#"):
            title = _plain(line.lstrip("#").strip())
            out += [title, "=" * len(title)] if line.startswith("# ") else [title, "-" * len(title)]
        else:
            out.append(_plain(line))
        index += 1
    return "\n".join(out) + "\n"
