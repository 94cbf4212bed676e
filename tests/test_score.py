"""``ftx score``: batch scoring on Apache Beam's RunInference, run as a user runs it (the real CLI, Beam's
in-process runner), checked against ONNX Runtime and TensorFlow called directly on serving's decode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.onnx_runner import usable_cores
from serving.scoring.images import ImageListError, list_images


def _ftx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def images(tiny_dataset, tmp_path_factory) -> Path:
    """The tiny test images in class folders, a corrupt PNG, and a text file the folder walk leaves out."""
    root = tmp_path_factory.mktemp("score") / "images"
    shutil.copytree(tiny_dataset / "test", root)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return root


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _reference(version_dir: Path, paths: list[str], model_format: str) -> np.ndarray:
    """Probabilities straight from the runtime, on the pixels ftx serve decodes for each file."""
    from serving.servable import decode_image

    batch = np.stack([decode_image(Path(p).read_bytes(), 32, 1 << 24) for p in paths])
    if model_format == "onnx":
        from export.onnx_runtime import open_session

        return open_session(version_dir / "model.onnx").run(["probabilities"], {"images": batch})[0]
    import tensorflow as tf

    model = tf.saved_model.load(str(version_dir))
    return model.signatures["serving_default"](images=tf.constant(batch))["probabilities"].numpy()


@pytest.mark.parametrize("model_format", ["onnx", "savedmodel"])
def test_score_writes_one_row_per_image_and_reports_the_bad_file(tiny_export, images, tmp_path, model_format):
    out = tmp_path / "scores"
    result = _ftx("score", str(tiny_export), str(images), "--out", str(out), "--format", model_format,
                  "--top-k", "2", "--min-batch-size", "2", "--max-batch-size", "4")
    assert result.returncode == 0, result.stderr
    good = sorted(str(p) for p in images.rglob("*.png") if p.name != "broken.png")
    rows = sorted(_rows(out / "predictions.jsonl"), key=lambda row: row["path"])
    assert [row["path"] for row in rows] == good
    labels = (tiny_export / "1" / "labels.txt").read_text().split()
    expected = _reference(tiny_export / "1", good, model_format)
    for row, probabilities in zip(rows, expected, strict=True):
        top = np.argsort(-probabilities, kind="stable")[:2]
        assert [entry["class_id"] for entry in row["top_k"]] == top.tolist()
        assert row["class_id"] == top[0] and row["class_name"] == labels[top[0]]
        assert row["score"] == pytest.approx(float(probabilities[top[0]]), abs=1e-5)
        assert [entry["class_name"] for entry in row["top_k"]] == [labels[i] for i in top]
        assert Path(row["path"]).parent.name == row["class_name"]  # the colours are learnt: every image right
    bad = _rows(out / "bad_files.jsonl")
    assert [entry["path"] for entry in bad] == [str(images / "red" / "broken.png")]
    assert "cannot decode" in bad[0]["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["scored"], summary["bad_files"]) == (len(good) + 1, len(good), 1)
    assert summary["format"] == model_format and summary["runner"] == "FnApiRunner"
    assert summary["version"] == 1 and summary["images_per_s"] > 0
    # the in-process runner: a worker process per core, each decoding and scoring on a 1-thread session
    assert summary["workers"] == usable_cores()
    assert summary["onnx_threads"] == ((1 if usable_cores() > 1 else 0) if model_format == "onnx" else None)
    assert f"scored {len(good)} of {len(good) + 1} images" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the staging directory was renamed


def test_a_csv_list_a_glob_and_beam_options_passed_through(tiny_export, images, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\nred/0.png,red\nred/1.png,red\n")
    shutil.copytree(images / "red", tmp_path / "red")
    out = tmp_path / "scores"
    result = _ftx("score", str(tiny_export / "1"), str(listing), str(images / "green" / "*.png"), "--out", str(out),
                  "--direct_num_workers=1", "--direct_running_mode=in_memory")
    assert result.returncode == 0, result.stderr
    paths = sorted(row["path"] for row in _rows(out / "predictions.jsonl"))
    greens = sorted(str(p) for p in (images / "green").glob("*.png"))
    assert paths == sorted([str(tmp_path / "red" / "0.png"), str(tmp_path / "red" / "1.png"), *greens])
    assert (out / "bad_files.jsonl").read_text() == ""
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"] == 1 and summary["onnx_threads"] == 0  # Beam's own options chose the workers


def test_refusals_are_one_line_with_exit_2(tiny_export, images, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    cases = [
        (["score", str(tiny_export), str(images), "--out", str(taken)], "already exists"),
        (["score", str(tiny_export), str(tmp_path / "nothing"), "--out", str(tmp_path / "a")],
         "no such folder, file or CSV list"),
        (["score", str(tmp_path), str(images), "--out", str(tmp_path / "b")], "not an ftx export"),
        (["score", str(tiny_export), str(images), "--out", str(tmp_path / "c"), "--min-batch-size", "9",
          "--max-batch-size", "3"], "1 <= min <= max"),
        (["score", str(tiny_export), str(images), "--out", str(tmp_path / "d"), "--version", "7"], "no version 7"),
    ]
    for args, message in cases:
        result = _ftx(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if not line.startswith("INFO ")]
        assert errors == [errors[0]] and errors[0].startswith("ftx score: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing written by a refusal
    # an option neither ftx score nor Beam knows is a typo on the in-process runner, not something to drop
    result = _ftx("score", str(tiny_export), str(images), "--out", str(tmp_path / "e"), "--top_k=3")
    assert result.returncode == 2 and "unrecognized arguments: --top_k" in result.stderr, result.stderr
    assert not (tmp_path / "e").exists()
    # other commands still refuse options they do not know
    result = _ftx("bench", str(tiny_export), "--direct_num_workers=1")
    assert result.returncode == 2 and "unrecognized arguments: --direct_num_workers=1" in result.stderr


def test_list_images_walks_folders_for_images_and_reads_csv_columns(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.PNG", "a/b/y.jpg", "a/b/z.txt", "a/w.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    assert list_images([str(tmp_path / "a")]) == sorted(str(tmp_path / n) for n in ("a/x.PNG", "a/b/y.jpg",
                                                                                    "a/w.jpeg"))
    plain = tmp_path / "plain.csv"
    plain.write_text("a/x.PNG\ngs://bucket/img.png\n")
    assert list_images([str(plain)]) == sorted([str(tmp_path / "a" / "x.PNG"), "gs://bucket/img.png"])
    named = tmp_path / "named.csv"
    named.write_text("label,filename\ncat,a/b/y.jpg\n")
    assert list_images([str(named), str(tmp_path / "a" / "*.jpeg")]) == sorted(
        [str(tmp_path / "a" / "b" / "y.jpg"), str(tmp_path / "a" / "w.jpeg")])
    (tmp_path / "empty").mkdir()
    for arguments, message in (([], "at least one"), ([str(tmp_path / "empty")], "holds no"),
                               ([str(tmp_path / "*.gif")], "matches no files")):
        with pytest.raises(ImageListError, match=message):
            list_images(arguments)
    broken = tmp_path / "broken.csv"
    broken.write_text("path,label\n,cat\n")
    with pytest.raises(ImageListError, match="line 2: no path"):
        list_images([str(broken)])
    broken.write_text("path\n")
    with pytest.raises(ImageListError, match="only its header"):
        list_images([str(broken)])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_score_killed_mid_pipeline_leaves_no_worker_and_the_next_run_sweeps_its_stage(tiny_export, images, tmp_path):
    import signal
    import time

    many = tmp_path / "many"
    for copy in range(40):  # enough images that the workers are busy when the kill lands
        shutil.copytree(images, many / str(copy), ignore=shutil.ignore_patterns("broken.png"))
    out = tmp_path / "scores"
    command = [sys.executable, "-m", "training.cli", "score", str(tiny_export), str(many), "--out", str(out)]
    score = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                             cwd=Path(__file__).resolve().parents[1])

    def workers() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and b"sdk_worker_main" in (entry / "cmdline").read_bytes():
                    session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
                    found += [int(entry.name)] if session == score.pid else []
            except (OSError, ValueError, IndexError):
                continue
        return found

    deadline = time.monotonic() + 120
    while not workers() and time.monotonic() < deadline and score.poll() is None:
        time.sleep(0.05)
    started = workers()
    assert started, "no Beam worker started"
    time.sleep(1.0)
    score.send_signal(signal.SIGKILL)
    score.wait(30)
    deadline = time.monotonic() + 30
    while workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers(), "Beam's workers outlived the ftx score that started them"
    stale = list(tmp_path.glob(".scores.*.partial"))
    assert len(stale) == 1 and not out.exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           cwd=Path(__file__).resolve().parents[1])
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"removed 1 staging directory left in {tmp_path} by a killed ftx process" in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many", "scores"]
    assert len(_rows(out / "predictions.jsonl")) == 40 * 12
