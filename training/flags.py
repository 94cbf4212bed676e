"""One flag table per stage CLI: ``(flag, config key, type, help)`` rows and ``(flag, key, help)`` switches.

Each stage declares its table once; this registers it on a parser (defaults
suppressed, so only flags actually given override the config file) and the
same keys are the stage's config-file keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_flags(parser: argparse.ArgumentParser | Any, flags: list[tuple], switches: list[tuple], defaults: Any,
              show: Callable[[str, Any], Any] = lambda key, value: value) -> None:
    """Register ``flags`` and ``switches``; ``show(key, default)`` is what the help says the default is."""
    for flag, key, kind, text in flags:
        default = show(key, getattr(defaults, key))
        parser.add_argument(flag, dest=key, type=kind, default=argparse.SUPPRESS,
                            help=text if default in (None, "") or "default" in text else f"{text} (default: {default})")
    for flag, key, text in switches:
        parser.add_argument(flag, dest=key, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                            help=f"{text} (default: {'on' if getattr(defaults, key) else 'off'})")
