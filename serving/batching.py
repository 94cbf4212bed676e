"""Server-side batching driven by TF Serving's ``BatchingParameters``.

Requests' images queue up; each of ``num_batch_threads`` workers takes the
oldest, then gathers more until ``max_batch_size`` images or
``batch_timeout_micros`` after the first arrived, pads the batch up to the
next ``allowed_batch_sizes`` entry (so the runtime sees few distinct shapes),
runs it once and hands every request its rows. A full queue
(``max_enqueued_batches`` batches waiting) is refused with RESOURCE_EXHAUSTED
rather than letting latency grow without bound. Each request's wait from
enqueue to dequeue is reported as TF Serving's ``queuing_latency`` (under the
batch thread pool's name).
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from serving.errors import ServingError
from serving.request_timing import add_queuing
from serving.servable import Runner
from serving.tfs_config import BatchingSettings


@dataclass
class _Task:
    images: np.ndarray
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)
    dequeued: float | None = None


class Batcher:
    """A runner that merges concurrent calls into batches; call it like the runner it wraps."""

    def __init__(self, runner: Runner, settings: BatchingSettings, name: str = "batch") -> None:
        self.runner, self.settings = runner, settings
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_images = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(settings.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        limit = self.settings.max_batch_size
        if len(images) > limit:
            raise ServingError.invalid(f"batch of {len(images)} is larger than max_batch_size {limit}")
        task = _Task(images)
        with self._cond:
            closed = self._closed
            if not closed and self._queued_images + len(images) > self.settings.max_enqueued_batches * limit:
                raise ServingError.exhausted(f"the batching queue is full ({self.settings.max_enqueued_batches} "
                                             f"batches of {limit} waiting); retry later")
            if not closed:
                self._queue.append(task)
                self._queued_images += len(images)
                self._cond.notify()
        if closed:  # a request that took this version just before it was unloaded: serve it, unbatched
            return self.runner(images)
        try:
            return task.future.result()
        finally:
            if task.dequeued is not None:
                add_queuing(self.settings.thread_pool_name, task.dequeued - task.enqueued)

    def _take_batch(self) -> list[_Task] | None:
        """The next batch, or None once closed and drained. Workers race for the queue; a loser waits again."""
        timeout = self.settings.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return None
                deadline = self._queue[0].enqueued + timeout
                while (self._queued_images < self.settings.max_batch_size and not self._closed
                       and (remaining := deadline - time.monotonic()) > 0):
                    self._cond.wait(remaining)
                batch, size = [], 0
                while self._queue and size + len(self._queue[0].images) <= self.settings.max_batch_size:
                    task = self._queue.popleft()
                    batch.append(task)
                    size += len(task.images)
                if batch:
                    dequeued = time.monotonic()
                    for task in batch:
                        task.dequeued = dequeued
                    self._queued_images -= size
                    return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                images = np.concatenate([task.images for task in batch]) if len(batch) > 1 else batch[0].images
                count = len(images)
                padded = self._padded_size(count)
                if padded > count:
                    images = np.concatenate([images, np.zeros((padded - count, *images.shape[1:]), images.dtype)])
                outputs = self.runner(images)[:count]
            except BaseException as error:  # noqa: BLE001 - every waiting request gets the error, the worker lives
                for task in batch:
                    task.future.set_exception(error)
                continue
            start = 0
            for task in batch:
                task.future.set_result(outputs[start:start + len(task.images)])
                start += len(task.images)

    def _padded_size(self, count: int) -> int:
        return next((size for size in self.settings.allowed_batch_sizes if size >= count), count)

    def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
