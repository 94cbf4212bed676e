"""ftx run end to end on the tiny dataset: every stage, the report, skipping unchanged stages, --force."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import make_tiny_dataset

CONFIG = """
[run]
name = "tiny"
progress = false
[train]
data = "{data}"
image_size = 32
strategy = "feature-extraction"
epochs = 30
batch_size = 8
seed = 3
learning_rate = 0.01
[export]
formats = ["onnx", "tflite"]
parity_images = 12
calibration_images = 8
[serve]
images = 12  # the whole tiny test split: every class, so a wrong label order shows
[bench]
formats = ["onnx", "tflite"]
batch_sizes = [1]
accuracy_images = 12
timing_images = 8
warmup_seconds = 0.0
window_seconds = 0.02
max_windows = {max_windows}
serving_modes = ["grpc-tensor"]
concurrency = [1]
serving_seconds = 0.5
serving_batching = ["off"]
"""


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def _ftx(*args) -> int:
    from training.cli import main

    return main([*map(str, args)])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = make_tiny_dataset(root / "data")
    config = root / "tiny.toml"
    config.write_text(CONFIG.format(data=data, max_windows=4))
    out = root / "out"
    assert _ftx("run", config, "--out", out) == 0
    return config, out, data


def test_every_stage_runs_and_the_report_stands_alone(pipeline):
    config, out, _ = pipeline
    state = json.loads((out / "state.json").read_text())["stages"]
    assert list(state) == ["train", "export", "serve", "bench", "report"]
    assert all(record["status"] == "done" for record in state.values())
    assert state["export"]["outputs"]["version_dir_path"] == str(out / "exports" / "tiny" / "1")
    assert state["export"]["outputs"]["blessed"] is True
    smoke = json.loads((out / "serve-smoke.json").read_text())
    assert smoke["passed"] and [c["check"] for c in smoke["checks"]] == [
        "gRPC GetModelStatus", "gRPC Predict serving_default (float tensor)",
        "gRPC Predict serving_bytes (encoded images)", "gRPC Classify (tf.Example)", "REST status",
        'REST predict serving_bytes ({"b64"})', "REST classify"]
    assert smoke["split"] == "test" and smoke["checks"][0]["detail"] == "version 1 AVAILABLE"
    assert (out / "bench" / "results.json").is_file()
    markdown = (out / "report.md").read_text()
    for heading in ("## Stages", "## Training", "## Export and parity gate", "## Serving smoke test",
                    "## Benchmarks", "## Serve this export"):
        assert heading in markdown
    assert "on 127.0.0.1, 12 test images," in markdown and "[(1, 'AVAILABLE')]" not in markdown
    assert "| onnx | " in markdown and "--model_base_path=" in markdown and "tensorflow/serving" in markdown
    html = (out / "report.html").read_text()
    images = _Images()
    images.feed(html)
    # training curves, confusion matrix, prediction grid, worst predictions, and the bench plots, all inlined
    assert len(images.sources) >= 6
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in images.sources)
    assert "<table>" in html and "tflite" in html
    assert (out / "config.toml").read_text().startswith("[run]\nname = \"tiny\"")


def test_unchanged_stages_are_skipped_and_a_changed_table_redoes_only_what_follows(pipeline, capsys):
    config, out, data = pipeline
    before = json.loads((out / "state.json").read_text())["stages"]
    capsys.readouterr()
    assert _ftx("run", config, "--out", out) == 0
    err = capsys.readouterr().err
    assert err.count("unchanged, skipped") == 5
    assert json.loads((out / "state.json").read_text())["stages"] == before

    config.write_text(CONFIG.format(data=data, max_windows=3))
    assert _ftx("run", config, "--out", out) == 0
    after = json.loads((out / "state.json").read_text())["stages"]
    assert [s for s in after if after[s]["finished"] != before[s]["finished"]] == ["bench", "report"]

    assert _ftx("run", config, "--out", out, "--force", "export") == 0
    forced = json.loads((out / "state.json").read_text())["stages"]
    assert forced["train"] == after["train"]
    assert forced["export"]["outputs"]["version"] == 2  # a new version; version 1 stays for TF Serving
    assert forced["serve"]["finished"] != after["serve"]["finished"]
    assert forced["bench"]["finished"] != after["bench"]["finished"]


def test_a_bad_config_is_refused_before_any_work(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[train]\nstrategy = 'all'\n[bench]\nbatch_sizes = [1]\n")
    assert _ftx("run", config, "--out", tmp_path / "out") == 2
    assert "[train] strategy must be one of lp-ft, scratch, feature-extraction, fine-tune, two-phase; got 'all'" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert _ftx("run", "--out", tmp_path / "out", "--force", "deploy") == 2
    assert "--force takes train, export, serve, bench, report or all; got deploy" in capsys.readouterr().err
    config.write_text(f"[train]\ndata = '{tmp_path / 'no-such-folder'}'\n")
    assert _ftx("run", config, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err == f"ftx run: data '{tmp_path / 'no-such-folder'}' does not exist, and it is not a builtin dataset " \
        "(fashion-mnist)\n"  # refused before any stage starts
    assert not (tmp_path / "out").exists()


def test_print_config_shows_the_demo_with_every_default(capsys):
    assert _ftx("demo", "--print-config") == 0
    text = capsys.readouterr().out
    assert text.startswith('[run]\nname = "fashion"\n')
    assert 'strategy = "lp-ft"' in text and "calibration_images = 500" in text
    assert "#   train.epochs (will be 100)\n" in text and "#   train.fine_tune_layers (will be 0)\n" in text
    assert re.search(r"accuracy_images = 2000", text)


CHECK_PAGE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-check', JSON.stringify({
    width: innerWidth, scroll: document.documentElement.scrollWidth, images: images.length,
    broken: images.filter(image => !(image.complete && image.naturalWidth > 0)).map(image => image.alt)}));
});</script>"""


def _chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium (Debian's chromium, which .ci/run installs)")
@pytest.mark.parametrize("width", [900, 1400])
def test_the_report_renders_in_a_real_browser_with_every_image_and_no_horizontal_overflow(pipeline, width,
                                                                                          tmp_path):
    import html
    import subprocess

    from PIL import Image

    _, out, _ = pipeline
    page = tmp_path / "report.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK_PAGE + "</body>"))
    browser = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([*browser, f"--window-size={width},1200", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    check = json.loads(html.unescape(found.group(1)))
    assert check["width"] == width
    assert check["images"] >= 5 and check["broken"] == [], check  # training curves, confusion, grids, bench
    assert check["scroll"] <= width, check  # wide tables scroll in their own box; the page does not
    shot = tmp_path / f"report-{width}.png"
    subprocess.run([*browser, f"--window-size={width},2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    with Image.open(shot) as image:
        assert image.size == (width, 2400)
        grey = np.asarray(image.convert("L"), dtype=np.float32)
    assert grey.std() > 20  # a page with text and plots, not a blank or error screen
    assert grey[:, -8:].std() < 5  # the right margin is empty: nothing runs off the page's edge
