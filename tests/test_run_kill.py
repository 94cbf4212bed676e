"""``ftx run`` killed with SIGKILL in every stage, then run again, ends as an uninterrupted run does.

Real processes and real signals: one ``ftx run`` goes through uninterrupted;
another is started again and again, each time killed (the ``ftx run`` process
alone, as the kernel's OOM killer would) in the next stage: mid-training after
some epochs, while tf2onnx converts, while the smoke test's ``ftx serve`` runs,
while a bench worker measures, and as the report starts. Its children must die
with it. The last start finishes, and its result is compared with the
uninterrupted one: the trained weights bit for bit, the exports' predictions,
the stage summaries, the smoke checks, the bench accuracies, and the file tree,
with nothing hidden or half written left over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_dataset
from test_kill_safety import _gone
from test_run_pipeline import CONFIG as PIPELINE_CONFIG
from training.native_stderr import is_native_log

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="children die with ftx run through Linux's PR_SET_PDEATHSIG")

# the pipeline test's tiny run, with epochs enough to land a kill among them
CONFIG = PIPELINE_CONFIG.replace("epochs = 30", "epochs = 40").replace("{max_windows}", "4")
STAGES = ["train", "export", "serve", "bench", "report"]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _workers(pid: int) -> set[int]:
    """The descendants that do ftx's work: all but the stderr filter every ftx process forks."""
    from training.native_stderr import FILTER_NAME

    found = set()
    for child in _descendants(pid):
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() != FILTER_NAME:
                found.add(child)
        except OSError:
            continue
    return found


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def _ready_to_kill(stage: str, out: Path, pid: int) -> bool:
    """The moment inside ``stage`` at which this test kills ``ftx run``."""
    if stage == "train":  # a few epochs done, so the rerun has something to resume
        history = out / "train.partial" / "history_head.json"
        try:
            return len(json.loads(history.read_text())) >= 3
        except (OSError, ValueError):
            return False
    if stage in ("export", "serve", "bench"):  # tf2onnx, ftx serve, a bench worker or the sweep's server
        return bool(_workers(pid))
    return True  # the report is quick: at once


def _run(config: Path, out: Path, env: dict, log: Path, kill_in: str | None) -> dict:
    """Start ``ftx run``; with ``kill_in``, SIGKILL it in that stage and say what the kill hit and left."""
    command = [sys.executable, "-m", "training.cli", "run", str(config), "--out", str(out)]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    if kill_in is None:
        assert process.wait(timeout=900) == 0, log.read_text()[-3000:]
        return {}
    started = f"[{STAGES.index(kill_in) + 1}/{len(STAGES)}] {kill_in} ..."
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if started in log.read_text() and _ready_to_kill(kill_in, out, process.pid):
            break
        time.sleep(0.01)
    assert process.poll() is None, f"ftx run ended before the kill in {kill_in}:\n{log.read_text()[-3000:]}"
    children, workers = _descendants(process.pid), _workers(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    for _ in range(300):
        if all(_gone(child) for child in children):
            break
        time.sleep(0.05)
    assert all(_gone(child) for child in children), f"children outlived ftx run killed in {kill_in}"
    done_line = f"[{STAGES.index(kill_in) + 1}/{len(STAGES)}] {kill_in}: "
    return {"stage": kill_in, "children": len(workers), "finished": done_line in log.read_text(),
            "left": sorted(p for p in _tree(out) if any(part.startswith(".") or part.endswith(".partial")
                                                         for part in Path(p).parts))}


def _predictions(out: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    version = out / "exports" / "tiny" / "1"
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    found = {"onnx": session.run(None, {session.get_inputs()[0].name: images})[0]}
    for path in sorted(version.glob("*.tflite")):
        runner = Interpreter(model_path=str(path))
        signature = runner.get_signature_runner()
        (name,) = signature.get_input_details()
        detail = signature.get_input_details()[name]
        if detail["dtype"] != np.float32:  # the int8 model takes quantized pixels
            scale, zero = detail["quantization"]
            feed = np.clip(np.round(images / scale + zero), np.iinfo(detail["dtype"]).min,
                           np.iinfo(detail["dtype"]).max).astype(detail["dtype"])
        else:
            feed = images
        rows = [next(iter(signature(**{name: feed[i:i + 1]}).values())) for i in range(len(feed))]
        found[path.name] = np.concatenate(rows)
    return found


def _weights(run_dir: Path) -> list[np.ndarray]:
    import keras

    import training.backbones.preprocessing  # noqa: F401  (registers the layer the model is saved with)

    return keras.saving.load_model(run_dir / "model.keras", compile=False).get_weights()


def test_ftx_run_killed_in_every_stage_then_rerun_ends_as_an_uninterrupted_run(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(data=data))
    env = {**os.environ, "FTX_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}

    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _run(config, reference, env, tmp_path / "reference.log", None)
    kills = [_run(config, killed, env, tmp_path / f"kill-{stage}.log", stage) for stage in STAGES]
    _run(config, killed, env, tmp_path / "final.log", None)
    (tmp_path / "kills.json").write_text(json.dumps(kills, indent=1))  # the table of what each kill left

    # each kill landed inside its stage and left work behind that the next start took up
    by_stage = {kill["stage"]: kill for kill in kills}
    assert not any(kill["finished"] for kill in kills if kill["stage"] != "report"), kills
    assert "train.partial" in by_stage["train"]["left"] and ".train-started" in by_stage["train"]["left"]
    assert any(p.startswith("exports/tiny/.1.") and p.endswith(".owner") for p in by_stage["export"]["left"])
    assert all(by_stage[stage]["children"] for stage in ("export", "serve", "bench"))
    final_log = (tmp_path / "final.log").read_text()
    quiet = (tmp_path / "reference.log").read_text()  # and the terminal of a whole run holds no library noise
    assert "retracing" not in quiet
    assert not [line for line in quiet.splitlines() if is_native_log(line.encode())]
    resumed = (tmp_path / "kill-export.log").read_text()
    assert "resuming phase 'head' after epoch" in resumed
    assert "by a killed export" in (tmp_path / "kill-serve.log").read_text()  # the export after it swept the stage

    # the same result: bit-identical weights and predictions, the same verdicts, checks and accuracies
    for ours, theirs in zip(_weights(killed / "train"), _weights(reference / "train"), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    images = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    expected = _predictions(reference, images)
    got = _predictions(killed, images)
    assert sorted(got) == sorted(expected) and len(got) >= 2
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)

    state = {out: json.loads((out / "state.json").read_text())["stages"] for out in (reference, killed)}
    assert [(s, r["status"]) for s, r in state[killed].items()] == [(s, "done") for s in STAGES]
    for stage in ("train", "export", "serve"):
        assert state[killed][stage]["summary"] == state[reference][stage]["summary"], stage
    assert state[killed]["export"]["summary"] == "BLESSED on 12 test images: version 1"  # the killed export never published

    def checks(out: Path) -> list:
        return [(c["check"], c["passed"], c["detail"]) for c in json.loads((out / "serve-smoke.json").read_text())["checks"]]

    assert checks(killed) == checks(reference) and all(passed for _, passed, _ in checks(killed))

    def accuracies(out: Path) -> dict:
        rows = json.loads((out / "bench" / "results.json").read_text())["formats"]
        return {row["format"]: (row["accuracy"]["accuracy"], row["accuracy"]["images"], row["top1_agreement"],
                                row["accuracy_drop_points"]) for row in rows}

    assert accuracies(killed) == accuracies(reference)
    for path in sorted((reference / "bench" / "predictions").glob("*.npy")):
        np.testing.assert_array_equal(np.load(killed / "bench" / "predictions" / path.name), np.load(path))

    # nothing stale: the same files as the uninterrupted run, no hidden stage, owner file or marker
    assert _tree(killed) == _tree(reference)
    assert not [p for p in _tree(killed) if any(part.startswith(".") or part.endswith(".partial")
                                                 for part in Path(p).parts)]
    assert "[5/5] report: done" in final_log
