"""Tell a real Ctrl-C or SIGTERM apart from an ordinary error.

A signal that arrives inside TensorFlow's C++ code can come back out as a
``RuntimeError`` (pybind11 replaces the active exception), which code that
isolates failures with ``except Exception`` would record as a failed step and
carry on. :class:`InterruptWatch` notes every SIGINT/SIGTERM before handing it
to the previous handler, so such code can re-raise the interrupt instead.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType

WATCHED = (signal.SIGINT, signal.SIGTERM)


class InterruptWatch:
    """Context manager: ``watch.reraise_if_interrupted(error)`` inside an ``except Exception`` block."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "InterruptWatch":
        if threading.current_thread() is threading.main_thread():  # signals can only be handled there
            for signum in WATCHED:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # an ignored signal stays ignored
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)  # Python's default raises KeyboardInterrupt; ftx's SIGTERM raises Terminated
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def raise_if_received(self) -> None:
        """Raise the interrupt now if one arrived where its exception was lost (a C callback, a finalizer).

        Call it before committing work (a rename that publishes): an interrupt
        must never end as a normal, successful exit.
        """
        if self.received is not None:
            self.reraise_if_interrupted(KeyboardInterrupt(f"signal {signal.Signals(self.received).name} "
                                                          "arrived earlier"))

    def reraise_if_interrupted(self, error: BaseException) -> None:
        """Raise what the signal's own handler raises (KeyboardInterrupt for SIGINT) if one was seen."""
        if self.received is None:
            return
        previous = self._previous.get(self.received)
        if self.received != signal.SIGINT:
            if callable(previous):
                try:
                    previous(self.received, None)
                except BaseException as raised:
                    raise raised from error
            raise SystemExit(128 + self.received) from error
        raise KeyboardInterrupt(f"signal {signal.Signals(self.received).name}") from error
