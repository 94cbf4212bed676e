"""Server-side batching: requests merge, pad to allowed sizes, and a full queue is refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher
from serving.errors import ServingError
from serving.request_timing import RequestTiming, timed_request
from serving.tfs_config import BatchingSettings


class RecordingRunner:
    """Doubles its input; records every batch shape it was given (the runtime's view)."""

    def __init__(self, delay: threading.Event | None = None) -> None:
        self.shapes: list[int] = []
        self.gate = delay
        self.entered = threading.Event()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.shapes.append(len(images))
        return images * 2


def test_concurrent_calls_merge_pad_to_allowed_sizes_and_get_their_own_rows():
    runner = RecordingRunner()
    batcher = Batcher(runner, BatchingSettings(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=2,
                                               max_enqueued_batches=10, allowed_batch_sizes=(4, 8)))
    results = {}

    def call(i: int) -> None:
        results[i] = batcher(np.full((1, 2), i, np.float32))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert {i: r.tolist() for i, r in results.items()} == {i: [[2 * i, 2 * i]] for i in range(6)}
    assert all(size in (4, 8) for size in runner.shapes)  # padded, never an odd shape
    assert len(runner.shapes) < 6  # merged


def test_too_large_a_task_and_a_full_queue_are_refused():
    gate = threading.Event()
    runner = RecordingRunner(gate)
    batcher = Batcher(runner, BatchingSettings(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1,
                                               max_enqueued_batches=1))
    with pytest.raises(ServingError, match="batch of 3 is larger than max_batch_size 2"):
        batcher(np.zeros((3, 1), np.float32))
    waiting = [threading.Thread(target=batcher, args=(np.zeros((2, 1), np.float32),)) for _ in range(2)]
    waiting[0].start()  # runs, held at the gate
    assert runner.entered.wait(10)
    waiting[1].start()  # fills the queue
    for _ in range(100):
        if batcher._queued_images == 2:
            break
        threading.Event().wait(0.02)
    with pytest.raises(ServingError, match="batching queue is full") as caught:
        batcher(np.zeros((1, 1), np.float32))
    assert caught.value.code.name == "RESOURCE_EXHAUSTED"
    gate.set()
    for thread in waiting:
        thread.join(10)
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on():
    calls = []

    def runner(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return images

    batcher = Batcher(runner, BatchingSettings(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1))
    with pytest.raises(RuntimeError, match="boom"):
        batcher(np.ones((1, 1), np.float32))
    assert batcher(np.ones((1, 1), np.float32)).tolist() == [[1.0]]
    batcher.close()


def test_a_call_after_close_is_still_served():
    """A request holding a version that is being unloaded must not fail (the swap under load)."""
    runner = RecordingRunner()
    batcher = Batcher(runner, BatchingSettings(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1))
    batcher.close()
    assert batcher(np.ones((2, 1), np.float32)).tolist() == [[2.0], [2.0]]
    assert runner.shapes == [2]


def test_each_request_reports_its_wait_in_the_queue_under_the_thread_pool_name():
    """batching_session.cc records queuing_latency{thread_pool_name} as dequeue time minus enqueue time. A
    request queued behind a batch held for 0.3 s waits about that long; the first one, taken at once, does not."""
    gate = threading.Event()
    runner = RecordingRunner(gate)
    batcher = Batcher(runner, BatchingSettings(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                                               max_enqueued_batches=4, thread_pool_name="pool-a"))
    timings: dict[str, RequestTiming] = {}

    def call(key: str) -> None:
        with timed_request() as timing:
            batcher(np.zeros((1, 1), np.float32))
        timings[key] = timing

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert runner.entered.wait(10)
    second = threading.Thread(target=call, args=("second",))
    second.start()
    time.sleep(0.3)
    gate.set()
    first.join(10)
    second.join(10)
    batcher.close()
    [(pool, first_wait)] = timings["first"].queuing
    [(_, second_wait)] = timings["second"].queuing
    assert pool == "pool-a"
    assert first_wait < 0.1 and 0.25 < second_wait < 5


def test_tf_serving_names_the_batch_thread_pool_by_how_batching_was_configured():
    """server.cc: --enable_batching without a file names the pool model_server_batch_threads; a
    batching_parameters_file without thread_pool_name leaves SharedBatchScheduler's default, batch_threads."""
    from serving.tfs_config import batching_parameters_class

    assert BatchingSettings().thread_pool_name == "model_server_batch_threads"
    assert BatchingSettings.from_message(batching_parameters_class()()).thread_pool_name == "batch_threads"
    named = batching_parameters_class()()
    named.thread_pool_name.value = "mine"
    assert BatchingSettings.from_message(named).thread_pool_name == "mine"
