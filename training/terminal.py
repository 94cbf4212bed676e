"""What ftx shows on the terminal: its own log lines through the progress bars, libraries' chatter only with -v.

Log records are written with ``tqdm.write``, which clears the bars, prints the
line and redraws them, so a record never cuts a bar in half. Libraries that
``print`` progress notes (ONNX Runtime's calibrators) or log straight on the
root logger are wrapped in ``library_chatter``: what they say goes to ftx's
debug log, shown with ``--verbose``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

OWN_PACKAGES = ("training", "export", "serving", "benchmarks")
FORMAT = "%(levelname)s %(name)s: %(message)s"


class TqdmHandler(logging.StreamHandler):
    """A stream handler that prints through tqdm, so active bars stay whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise into the code that logs
            self.handleError(record)


def configure_logging(verbose: bool) -> None:
    """ftx's own loggers at INFO (DEBUG with -v); libraries only from WARNING on, unless -v."""
    root = logging.getLogger()
    if not root.handlers:  # as basicConfig: a host that set up logging (pytest, an embedding app) keeps its own
        handler = TqdmHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for package in OWN_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)


class _Captured(logging.Filter):
    """Keeps records logged on the root logger itself (``logging.warning(...)`` in a library)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def library_chatter(log: logging.Logger, what: str) -> Iterator[None]:
    """Run a library call whose prints and root-logger notes are not for the user: they go to ``log.debug``."""
    captured, printed = _Captured(), io.StringIO()
    root = logging.getLogger()
    root.addFilter(captured)
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        root.removeFilter(captured)
        lines = [line for line in printed.getvalue().splitlines() if line.strip()]
        lines += [f"{record.levelname} {record.getMessage()}" for record in captured.records]
        for line in lines:
            log.debug("%s: %s", what, line)
