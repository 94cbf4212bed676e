"""Atomic file writes: what a killed writer leaves is removed by the next write of the same file."""

from __future__ import annotations

import os
import subprocess
import sys

from training.atomic import write_text


def test_the_next_write_removes_a_dead_writers_temporary_file_only(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = tmp_path / f".report.md.{finished.pid}.k3j2.tmp"
    live = tmp_path / f".report.md.{os.getpid()}.a1b2.tmp"  # a writer that is still running: this test
    other = tmp_path / ".report.md.bak.tmp"  # not a temporary file of ftx's naming
    for path in (dead, live, other):
        path.write_text("half")
    write_text(tmp_path / "report.md", "whole\n")
    assert (tmp_path / "report.md").read_text() == "whole\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.md", live.name, other.name])


def test_a_write_leaves_no_temporary_file_and_names_its_own_with_its_pid(tmp_path, monkeypatch):
    import tempfile

    seen = []
    real = tempfile.mkstemp

    def recording(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        seen.append(os.path.basename(name))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recording)
    write_text(tmp_path / "a.json", "{}\n")
    assert seen and seen[0].startswith(f".a.json.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
