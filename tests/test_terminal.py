"""What reaches the terminal: TensorFlow's C++ log lines filtered, log records through the bars, library chatter.

The filter is checked on a real process that imports TensorFlow, with its
stderr a real pipe, against the same process without the filter.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

from training.native_stderr import is_native_log, pump
from training.terminal import FORMAT, TqdmHandler, library_chatter

IMPORT_TF = ("import os, sys\n"
             "{setup}\n"
             "import tensorflow as tf\n"
             "tf.config.list_physical_devices('GPU')\n"
             "print('a line from Python', file=sys.stderr)\n"
             "os.write(2, b'F0000 00:00:1796197073.041264   13175 check.cc:1] Check failed: kept\\n')\n"
             "os.write(2, b'a native line nobody knows\\n')\n")


def _stderr_lines(setup: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", IMPORT_TF.format(setup=setup)], capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr.splitlines()


def test_tensorflows_cpp_log_lines_are_filtered_and_everything_else_passes():
    unfiltered = _stderr_lines("")
    native = [line for line in unfiltered if is_native_log(line.encode())]
    assert len(native) >= 4, unfiltered  # the banner, oneDNN, cuda drivers, CPU features: what users see today
    assert any("absl::InitializeLog" in line for line in native)

    filtered = _stderr_lines("from training.native_stderr import filter_native_stderr; filter_native_stderr()")
    assert not [line for line in filtered if is_native_log(line.encode())], filtered
    assert "a line from Python" in filtered
    assert any(line.startswith("F0000") and "Check failed: kept" in line for line in filtered)  # fatal lines stay
    assert "a native line nobody knows" in filtered
    assert len(filtered) == len(unfiltered) - len(native)


def test_pump_passes_progress_carriage_returns_and_keeps_an_unfinished_last_line():
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write_end, b"I0000 00:00:1796197073.041264   13175 port.cc:153] oneDNN custom operations are on.\n"
                        b"50%\r100%\r\nE0000 00:00:12.5 7 cuda_platform.cc:52] failed call to cuInit\n"
                        b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nlast words")
    os.close(write_end)
    pump(read_end, out_write)
    os.close(out_write)
    assert os.read(out_read, 1 << 16) == b"50%\r100%\r\nlast words"


def test_a_log_record_does_not_cut_a_progress_bar_in_half():
    from tqdm import tqdm

    stream = io.StringIO()
    handler = TqdmHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    log = logging.getLogger("export.terminal_test")
    log.addHandler(handler)
    log.propagate = False
    try:
        with tqdm(total=2, file=stream, desc="export", ascii=True) as bar:
            bar.update()
            log.warning("a note")
            bar.update()
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "\rWARNING export.terminal_test: a note\n" in text  # the bar was cleared first
    assert "]WARNING" not in text


def test_library_chatter_goes_to_the_debug_log(caplog):
    log = logging.getLogger("export.chatter_test")
    with caplog.at_level(logging.DEBUG, logger="export"):  # an earlier ftx main() may have set it to INFO
        with library_chatter(log, "quantizer"):
            print("Collecting tensor data and making histogram ...")
            logging.warning("Please consider to run pre-processing before quantization.")
            logging.getLogger("export.other").info("ftx's own record passes")
    shown = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("export.chatter_test", "DEBUG", "quantizer: Collecting tensor data and making histogram ...") in shown
    assert ("export.chatter_test", "DEBUG",
            "quantizer: WARNING Please consider to run pre-processing before quantization.") in shown
    assert ("export.other", "INFO", "ftx's own record passes") in shown
    assert not [r for r in caplog.records if r.name == "root"]
