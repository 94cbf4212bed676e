"""SIGKILL leaves nothing behind for long: owned staging directories, converters that die with their parent.

Real processes and real signals: a stage's owner is killed with SIGKILL, an
``ftx export`` is killed while tf2onnx runs, and the next run cleans up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training import staging
from training.atomic import staged_directory

HOLD = ("import sys, time\nfrom pathlib import Path\nfrom training.staging import make_stage\n"
        "stage = make_stage(Path(sys.argv[1]), sys.argv[2])\n(stage / 'data.bin').write_bytes(b'0' * 4096)\n"
        "print(stage, flush=True)\ntime.sleep(600)\n")


def _holder(parent: Path, prefix: str) -> tuple[subprocess.Popen, Path]:
    """A process that owns a stage under ``parent`` and sleeps; returns it and its stage."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(parent), prefix], stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip())


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def test_sweep_removes_only_the_stages_of_dead_owners(tmp_path, caplog):
    killed, killed_stage = _holder(tmp_path, ".1.")
    alive, alive_stage = _holder(tmp_path, ".2.")
    try:
        mine = staging.make_stage(tmp_path, ".3.")
        _kill(killed)
        assert killed_stage.is_dir()  # SIGKILL ran no cleanup
        with caplog.at_level("WARNING", logger="training.staging"):
            assert staging.sweep(tmp_path, ".", "export") == [killed_stage]
        assert not killed_stage.exists() and not Path(f"{killed_stage}.owner").exists()
        assert alive_stage.is_dir() and mine.is_dir()  # a live owner's stage and this process's own stay
        (message,) = [r.getMessage() for r in caplog.records]
        assert message.startswith(f"removed 1 staging directory left in {tmp_path} by a killed export (0.0 MB): "
                                  f"{killed_stage.name}")
        staging.discard(mine)
        assert not mine.exists() and not Path(f"{mine}.owner").exists()
    finally:
        _kill(alive)
    assert staging.sweep(tmp_path) == [alive_stage]
    assert list(tmp_path.iterdir()) == []


def test_an_unowned_stage_is_kept_while_it_may_still_be_starting(tmp_path):
    young = tmp_path / ".1.abc.partial"
    young.mkdir()
    old = tmp_path / ".2.abc.partial"
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert staging.sweep(tmp_path) == [old]
    assert young.is_dir()


def test_staged_directory_clears_a_killed_attempt_at_the_same_destination(tmp_path):
    final = tmp_path / "cache-entry"
    killed, stale = _holder(tmp_path, f".{final.name}.")
    _kill(killed)
    with staged_directory(final) as stage:
        (stage / "ok").write_text("done")
    assert (final / "ok").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache-entry"]  # no stale stage, no owner file
    assert not stale.exists()


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append((int(entry.name), command))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_export_killed_during_tf2onnx_takes_the_converter_with_it_and_the_next_export_cleans_up(tiny_run,
                                                                                                 tmp_path):
    command = [sys.executable, "-m", "training.cli", "export", str(tiny_run), "--name", "tiny", "--out",
               str(tmp_path), "--formats", "onnx", "--parity-images", "6"]
    export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    converter = None
    deadline = time.monotonic() + 240
    while converter is None and time.monotonic() < deadline and export.poll() is None:
        converter = next((pid for pid, line in _children(export.pid) if "tf2onnx.convert" in line), None)
        time.sleep(0.05)
    assert converter is not None, "tf2onnx never started"
    _kill(export)
    for _ in range(200):
        if _gone(converter):
            break
        time.sleep(0.05)
    assert _gone(converter), "tf2onnx outlived the export that started it"
    stale = list((tmp_path / "tiny").glob(".1.*.partial"))
    assert len(stale) == 1 and Path(f"{stale[0]}.owner").is_file()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"removed 1 staging directory left in {tmp_path / 'tiny'} by a killed export" in again.stderr
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]  # published; nothing hidden left
