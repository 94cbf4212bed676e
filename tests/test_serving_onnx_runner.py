"""ftx serve's ONNX Runtime runner: the all-core session alone, the 1-thread session for calls that overlap."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from export.onnx_runtime import open_session
from serving.onnx_runner import OnnxRunner, usable_cores


class _Watched:
    """A real session that records how many of its calls overlap (the runner's collaborator, not replaced)."""

    def __init__(self, session, record: dict) -> None:
        self.session, self.record = session, record

    def run(self, names, feed):
        with self.record["lock"]:
            self.record["now"] += 1
            self.record["peak"] = max(self.record["peak"], self.record["now"])
            self.record["calls"][id(self)] = self.record["calls"].get(id(self), 0) + 1
        try:
            time.sleep(0.01)  # long enough for the other callers to arrive while this one runs
            return self.session.run(names, feed)
        finally:
            with self.record["lock"]:
                self.record["now"] -= 1


@pytest.fixture()
def images(tiny_export):
    return np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)


def test_both_sessions_give_the_probabilities_of_a_plain_session(tiny_export, images):
    model = tiny_export / "1" / "model.onnx"
    expected = open_session(model, threads=1).run(["probabilities"], {"images": images})[0]
    runner = OnnxRunner(model)
    if usable_cores() < 2:
        pytest.skip("one core: the runner holds one session")
    assert runner.adaptive and runner.lean is not None
    for session in (runner.fast, runner.lean):
        np.testing.assert_allclose(session.run(["probabilities"], {"images": images})[0], expected, atol=1e-6)
    np.testing.assert_allclose(runner(images), expected, atol=1e-6)


def test_an_explicit_thread_count_is_one_session_without_a_gate(tiny_export, images):
    runner = OnnxRunner(tiny_export / "1" / "model.onnx", threads=1)
    assert not runner.adaptive and runner.lean is None
    assert runner(images).shape == (3, runner.session.get_outputs()[0].shape[-1] or 3)


def test_a_lone_call_takes_the_all_core_session_and_overlapping_calls_share_the_lean_one(tiny_export, images):
    if usable_cores() < 2:
        pytest.skip("one core: the runner holds one session")
    runner = OnnxRunner(tiny_export / "1" / "model.onnx")
    record = {"lock": threading.Lock(), "now": 0, "peak": 0, "calls": {}}
    runner.fast, runner.lean = _Watched(runner.fast, record), _Watched(runner.lean, record)
    runner(images)
    assert record["calls"] == {id(runner.fast): 1}  # alone: the all-core session

    results, errors = [], []

    def call() -> None:
        try:
            results.append(runner(images))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(4 * runner.cores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 4 * runner.cores
    assert record["calls"].get(id(runner.lean), 0) >= 2 * runner.cores  # under load, mostly the lean session
    # overlapping calls are not queued behind each other: the kernel shares the cores between them
    assert record["peak"] > runner.cores
    for result in results:
        np.testing.assert_allclose(result, results[0], atol=1e-6)
