"""Where ftx keeps downloaded weights and datasets (the ftx cache).

One place, overridable with ``FTX_HOME``, so that CI, tests and users can point
every download at a directory they control.
"""

from __future__ import annotations

import os
from pathlib import Path


def ftx_home() -> Path:
    """Return the cache root: ``$FTX_HOME``, else ``$XDG_CACHE_HOME/ftx``, else ``~/.cache/ftx``."""
    explicit = os.environ.get("FTX_HOME")
    if explicit:
        return Path(explicit).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "ftx").resolve()


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache, created on demand (``cache_dir("weights")``)."""
    path = ftx_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
