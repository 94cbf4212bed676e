"""Helpers of the edge tests: ftx processes with TensorFlow blocked (full install) or absent (edge venv)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BLOCKER = Path(__file__).parent / "no_tensorflow"
IN_EDGE_VENV = os.environ.get("FTX_EDGE_EXPORT") is not None


def edge_env(**extra: str) -> dict[str, str]:
    """The environment of an ftx process in these tests: TensorFlow blocked (full install) or absent (edge venv)."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BLOCKER), env.get("PYTHONPATH")) if p)
    return env


def ftx(*args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=edge_env(**extra))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """``ftx serve`` in a child process on free ports; ``stop()`` sends SIGTERM and returns its output."""

    def __init__(self, *flags: str) -> None:
        self.grpc_port, self.rest_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.cli", "serve", f"--port={self.grpc_port}",
             f"--rest_api_port={self.rest_port}", "--file_system_poll_wait_seconds=0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=edge_env())
        self.lines: list[str] = []
        deadline = time.monotonic() + 120
        for line in self.process.stdout:
            self.lines.append(line)
            if "Ctrl-C stops" in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise AssertionError("ftx serve did not start:\n" + "".join(self.lines))

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                rest, _ = self.process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                rest, _ = self.process.communicate()
            self.lines.append(rest or "")
        return "".join(self.lines)
