"""SIGKILL leaves nothing behind for long: owned staging directories, converters that die with their parent.

Real processes and real signals: a stage's owner is killed with SIGKILL, an
``ftx export`` is killed while tf2onnx runs, and the next run cleans up.
"""

from __future__ import annotations

import os
import shutil
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


def _kill_while_child_runs(command: list[str], marker: str, what: str) -> None:
    """Start ``command``, SIGKILL it once a child whose command line holds ``marker`` runs, and check that the
    child (``what``) dies with it."""
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = None
    deadline = time.monotonic() + 240
    while child is None and time.monotonic() < deadline and parent.poll() is None:
        child = next((pid for pid, line in _children(parent.pid) if marker in line), None)
        time.sleep(0.05)
    assert child is not None, f"no {what} started"
    _kill(parent)
    for _ in range(200):
        if _gone(child):
            break
        time.sleep(0.05)
    assert _gone(child), f"the {what} outlived the process that started it"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_export_killed_during_tf2onnx_takes_the_converter_with_it_and_the_next_export_cleans_up(tiny_run,
                                                                                                 tmp_path):
    command = [sys.executable, "-m", "training.cli", "export", str(tiny_run), "--name", "tiny", "--out",
               str(tmp_path), "--formats", "onnx", "--parity-images", "6"]
    _kill_while_child_runs(command, "tf2onnx.convert", "tf2onnx converter")
    stale = list((tmp_path / "tiny").glob(".1.*.partial"))
    assert len(stale) == 1 and Path(f"{stale[0]}.owner").is_file()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"removed 1 staging directory left in {tmp_path / 'tiny'} by a killed export" in again.stderr
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]  # published; nothing hidden left


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


CORRUPTIONS = {  # case -> (how, the start of the one-line error after the run's path)
    "model.keras missing": (lambda run: (run / "model.keras").unlink(), "is not a complete ftx run: missing model.keras"),
    "model.keras empty": (lambda run: (run / "model.keras").write_bytes(b""), "/model.keras is empty"),
    "model.keras truncated": (lambda run: _truncate(run / "model.keras"), "/model.keras is not a Keras model file"),
    "model.keras garbage": (lambda run: (run / "model.keras").write_bytes(os.urandom(4096)),
                            "/model.keras is not a Keras model file"),
    "saved_model.pb truncated": (lambda run: _truncate(run / "saved_model" / "saved_model.pb"),
                                 "/saved_model/saved_model.pb is not a SavedModel"),
    "saved_model.pb garbage": (lambda run: (run / "saved_model" / "saved_model.pb").write_bytes(b"\xff" * 999),
                               "/saved_model/saved_model.pb is not a SavedModel"),
    "labels.txt empty": (lambda run: (run / "labels.txt").write_text(""), "/labels.txt is empty"),
    "labels.txt binary": (lambda run: (run / "labels.txt").write_bytes(b"\xff\xfe\x00a\nb\n"),
                          "/labels.txt is not UTF-8 text"),
    "labels.txt one class more": (lambda run: (run / "labels.txt").write_text("blue\ngreen\nred\nyellow\n"),
                                  "/labels.txt lists 4 classes, but the model has 3 outputs"),
    "config.json truncated": (lambda run: _truncate(run / "config.json"), "/config.json is not valid JSON"),
    "config.json a list": (lambda run: (run / "config.json").write_text("[1, 2]"),
                           "/config.json holds a JSON list, not the object ftx writes"),
    "config.json another image size": (
        lambda run: (run / "config.json").write_text(
            (run / "config.json").read_text().replace('"image_size": 32', '"image_size": 64')),
        "/config.json says image_size 64, but the model takes 32 px images"),
    "metrics.json garbage": (lambda run: (run / "metrics.json").write_bytes(b"\x00\x01{"),
                             "/metrics.json is not valid JSON"),
    "metrics.json missing": (lambda run: (run / "metrics.json").unlink(),
                             "is not a complete ftx run: missing metrics.json"),
    "metrics.json empty": (lambda run: (run / "metrics.json").write_bytes(b""), "/metrics.json is empty"),
    "metrics.json truncated": (lambda run: _truncate(run / "metrics.json"), "/metrics.json is not valid JSON"),
    "config.json missing": (lambda run: (run / "config.json").unlink(),
                            "is not a complete ftx run: missing config.json"),
    "config.json empty": (lambda run: (run / "config.json").write_bytes(b""), "/config.json is empty"),
    "config.json garbage": (lambda run: (run / "config.json").write_bytes(os.urandom(64) + b"{"),
                            "/config.json is not"),  # not valid JSON, or not UTF-8 JSON: either names the file
    "labels.txt missing": (lambda run: (run / "labels.txt").unlink(), "is not a complete ftx run: missing labels.txt"),
    "labels.txt truncated": (lambda run: (run / "labels.txt").write_text("blue\n"),
                             "/labels.txt lists 1 class(es); expected at least 2"),
    "saved_model missing": (lambda run: shutil.rmtree(run / "saved_model"),
                            "is not a complete ftx run: missing saved_model/saved_model.pb, "
                            "saved_model/variables/variables.index"),
    "saved_model.pb empty": (lambda run: (run / "saved_model" / "saved_model.pb").write_bytes(b""),
                             "/saved_model/saved_model.pb is empty"),
    "variables.index truncated": (lambda run: _truncate(run / "saved_model" / "variables" / "variables.index"),
                                  "/saved_model/variables/variables.index is not a readable variables index"),
    "variables data truncated": (
        lambda run: _truncate(run / "saved_model" / "variables" / "variables.data-00000-of-00001"),
        "/saved_model/variables/variables.data-00000-of-00001 is "),
    "variables data missing": (
        lambda run: (run / "saved_model" / "variables" / "variables.data-00000-of-00001").unlink(),
        "/saved_model/variables/variables.data-00000-of-00001 is missing"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_every_corrupt_run_file_is_one_clear_error(case, tiny_run, tmp_path):
    import shutil

    from export.run_dir import RunDirError, read_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    damage, message = CORRUPTIONS[case]
    damage(run)
    with pytest.raises(RunDirError) as raised:
        read_run(run)
    text = str(raised.value)
    assert text.startswith(f"{run}{'' if message.startswith('/') else ' '}{message}"), text
    assert "\n" not in text


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_ftx_export_on_a_corrupt_run_exits_2_with_one_line(case, tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    CORRUPTIONS[case][0](run)
    result = subprocess.run([sys.executable, "-m", "training.cli", "export", str(run), "--name", "m", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("ftx export: ") and CORRUPTIONS[case][1] in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_staged_directory_leaves_hidden_folders_that_are_not_ftx_stages(tmp_path):
    other = tmp_path / ".someone-elses.partial"  # no owner file: not provably a dead ftx stage
    other.mkdir()
    os.utime(other, (time.time() - 3600, time.time() - 3600))
    killed, stale = _holder(tmp_path, ".bench-a.")  # another destination's stage, owner dead
    _kill(killed)
    with staged_directory(tmp_path / "bench-b") as stage:
        (stage / "ok").write_text("done")
    assert other.is_dir() and not stale.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_bench_killed_while_a_worker_measures_takes_the_worker_with_it_and_the_next_bench_cleans_up(tiny_export,
                                                                                                    tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "-m", "training.cli", "bench", str(tiny_export), "--formats", "onnx",
               "--batch-sizes", "1,8", "--no-serving", "--accuracy-images", "0", "--timing-images", "8",
               "--window-seconds", "0.5", "--max-windows", "3", "--out", str(out)]
    _kill_while_child_runs(command, "benchmarks.worker", "benchmark worker")
    stale = list(tmp_path.glob(".report.*.partial"))
    assert len(stale) == 1 and Path(f"{stale[0]}.owner").is_file() and not out.exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"removed 1 staging directory left in {tmp_path} by a killed ftx process" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # published; nothing hidden left
    assert (out / "results.json").is_file()
