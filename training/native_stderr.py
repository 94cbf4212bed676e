"""Keep TensorFlow's C++ log lines off the terminal unless ``--verbose``.

TensorFlow, XLA and LiteRT log from C++ straight to file descriptor 2, most of
it before absl's logging is set up, so ``TF_CPP_MIN_LOG_LEVEL=3`` still
leaves six lines per import (``failed call to cuInit`` on every CPU machine
among them). Python cannot filter what never passes through it, so
``filter_native_stderr`` points fd 2 at a pipe read by a small forked
process that drops those lines and copies everything else to the terminal,
while Python's own ``sys.stderr`` (logging, progress bars) keeps the terminal
itself. Fatal (``F``) lines, tracebacks and anything unrecognised pass
through. The filter drains the pipe until every writer is gone, so nothing is
lost when ftx exits, and leaves on its own when ftx is killed.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import signal
import sys
import time

# absl / TSL log lines below FATAL ("I0000 00:00:1796197073.041264   13175 port.cc:153] ...": before
# absl is initialised the time is seconds since the epoch), the TFLite converter's printf of its settings,
# absl's one-time banner, the continuation line of TF's CPU-feature notice, LiteRT's delegate notice
NATIVE_LOG = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] "
                        rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                        rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler"
                        rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
                        rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type:)")
MAX_LINE = 1 << 16  # a longer run without a newline is passed on as it is
FILTER_NAME = "ftx-stderr"  # what ps and /proc/PID/comm show for the filter process


def is_native_log(line: bytes) -> bool:
    return NATIVE_LOG.match(line) is not None


def pump(source: int, sink: int) -> None:
    """Copy ``source`` to ``sink`` line by line, leaving out native log lines, until end of file."""
    pending = b""
    while True:
        try:
            chunk = os.read(source, 1 << 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        pending += chunk
        *lines, pending = re.split(rb"(?<=[\n\r])", pending)
        if len(pending) > MAX_LINE:
            lines.append(pending)
            pending = b""
        kept = b"".join(line for line in lines if not is_native_log(line))
        if kept:
            _write_all(sink, kept)
    if pending and not is_native_log(pending):
        _write_all(sink, pending)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except OSError:  # the terminal went away: nothing more can be shown
            return


def _name_process(name: str) -> None:
    """PR_SET_NAME, so ``ps`` tells the filter from the ftx process it was forked from."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode(), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _drain(pid: int, wait_s: float = 2.0) -> None:
    """At exit: close this process's end of the pipe and let the filter pass on the last lines.

    Whoever reads ftx's stderr after ftx exits then finds everything there. A
    child still holding the pipe keeps the filter alive; it is not waited for.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)


def filter_native_stderr() -> bool:
    """Route fd 2 through the filter process; Python's ``sys.stderr`` keeps the real stderr. False if not done."""
    if os.name != "posix" or not hasattr(os, "fork"):
        return False
    try:
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return False
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the filter: Ctrl-C reaches the whole process group, and ftx's last words must still pass
        try:
            _name_process(FILTER_NAME)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.close(write_end)
            for fd in (0, 1):
                os.close(fd)
            pump(read_end, terminal)
        finally:
            os._exit(0)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    atexit.register(_drain, pid)
    sys.stderr = io.TextIOWrapper(io.FileIO(terminal, "w", closefd=True), encoding=sys.stderr.encoding,
                                  errors="backslashreplace", line_buffering=True)
    return True
