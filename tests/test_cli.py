"""The ftx command line: no abbreviations, the subcommand's usage on its errors, --version, help, fast failures.

Each case runs the real console entry in a fresh interpreter; "before the
TensorFlow import" is asserted from ``sys.modules`` of that interpreter.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest

CHECK_IMPORTS = ("import sys\nfrom training.cli import main\nrc = main(sys.argv[1:])\n"
                 "print('exit', rc, 'tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow')\n")


def _ftx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], capture_output=True, text=True, timeout=300)


def _without_tensorflow(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, *args], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.strip().endswith("exit 2 no tensorflow"), (result.stdout, result.stderr[-2000:])
    return result


def test_version():
    result = _ftx("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"ftx {version('ftx')}"


@pytest.mark.parametrize("args, unknown", [
    (["train", "--epoch", "2"], "--epoch 2"),  # was silently --epochs
    (["export", "some-run", "--format", "onnx"], "--format onnx"),
    (["client", "status", "--model", "m", "--serv", "x"], "--serv x"),
])
def test_abbreviations_are_refused_with_the_subcommands_usage(args, unknown):
    result = _ftx(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: ftx {args[0]} ")
    assert result.stderr.strip().endswith(f"ftx {args[0]}: error: unrecognized arguments: {unknown}")


def test_help_says_each_default_once_marks_required_and_shows_no_restructured_text():
    for command in ("demo", "run", "train", "export", "serve", "client", "bench", "serving-config", "cache"):
        result = _ftx(command, "--help")
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stdout.split())
        assert "``" not in text, command
        assert "(default: None)" not in text and "(default: False)" not in text, command
        for option in re.split(r"(?= --?[a-z])", text):
            assert option.count("(default") <= 1, (command, option)
    assert "--model MODEL model name (required)" in " ".join(_ftx("client", "--help").stdout.split())
    serve = " ".join(_ftx("serve", "--help").stdout.split())
    assert "seconds between re-reads of --model_config_file (0: read once) (default: 0)" in serve  # 0 is a value
    assert "the name TF Serving serves (required, here or in --config)" in " ".join(_ftx("export", "--help").stdout.split())


def test_a_missing_data_folder_fails_before_the_tensorflow_import(tmp_path):
    result = _without_tensorflow("train", "--data", str(tmp_path / "nope"))
    assert f"ftx train: data '{tmp_path / 'nope'}' does not exist, and it is not a builtin dataset" in result.stderr
    config = tmp_path / "run.toml"
    config.write_text(f"[train]\ndata = '{tmp_path / 'nope'}'\n")
    result = _without_tensorflow("run", str(config), "--out", str(tmp_path / "out"))
    assert f"ftx run: data '{tmp_path / 'nope'}' does not exist" in result.stderr
    assert not (tmp_path / "out").exists()


def test_training_into_a_finished_run_fails_before_the_tensorflow_import(tiny_dataset, tiny_run):
    result = _without_tensorflow("train", "--data", str(tiny_dataset), "--out", str(tiny_run))
    assert result.stderr.strip() == f"ftx train: {tiny_run} already holds a finished run; choose another --out"
