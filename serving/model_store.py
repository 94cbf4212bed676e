"""The models a server holds, kept in step with their version directories as TF Serving does.

Each model's ``base_path`` holds integer version directories; which ones are
loaded follows the model's version policy (latest N, all, specific). A poller
re-scans every ``poll_seconds``: new versions are loaded beside the old ones and
swapped in only once loaded, removed ones are dropped, so requests never see a
gap. Only integer names count: ftx stages an export as ``.N.*.partial`` and a
refused one as ``N.not_blessed``, so a half-written or unblessed version is
never served. A version that fails to load (a copy still in progress) is
retried on the next scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.batching import Batcher
from serving.errors import ServingError
from serving.servable import BACKENDS, MAX_BATCH, Servable, load_servable
from serving.tfs_config import BatchingSettings, ModelEntry

log = logging.getLogger(__name__)
Loader = Callable[[str, int, Path], Servable]


def available_versions(base_path: Path, backend: str) -> list[int]:
    """Integer version directories that hold the backend's model file, ascending."""
    if not base_path.is_dir():
        return []
    return sorted(int(p.name) for p in base_path.iterdir()
                  if p.is_dir() and p.name.isdigit() and (p / BACKENDS[backend]).is_file())


def wanted_versions(entry: ModelEntry, available: list[int]) -> list[int]:
    policy = entry.policy
    if policy.kind == "all":
        return list(available)
    if policy.kind == "specific":
        return [v for v in available if v in policy.versions]
    return available[-policy.latest:]


@dataclass
class ModelState:
    entry: ModelEntry
    loaded: dict[int, Servable]
    failed: dict[int, str]


class ModelStore:
    """Thread-safe lookup of loaded versions by model name and version or label."""

    def __init__(self, entries: list[ModelEntry], backend: str = "onnx", threads: int | None = None,
                 batching: BatchingSettings | None = None, loader: Loader | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.batching = batching
        max_batch = batching.max_batch_size if batching else MAX_BATCH
        self._load = loader or (lambda name, version, path: load_servable(name, version, path, backend, threads,
                                                                          max_batch))
        self._models = {entry.name: ModelState(entry, {}, {}) for entry in entries}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # lookup

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        with self._lock:
            state = self._models.get(name)
            if state is None:
                raise ServingError.not_found(f"no model named {name!r}; this server serves "
                                             f"{', '.join(sorted(self._models)) or 'nothing'}")
            loaded = dict(state.loaded)
            labels = dict(state.entry.labels)
        if label:
            if label not in labels:
                raise ServingError.not_found(f"model {name!r} has no version label {label!r}; labels: "
                                             f"{', '.join(sorted(labels)) or 'none'}")
            version = labels[label]
        if version is None or version == 0:
            if not loaded:
                raise ServingError.unavailable(f"model {name!r} has no loaded version yet")
            return loaded[max(loaded)]
        if version not in loaded:
            raise ServingError.not_found(f"model {name!r} has no loaded version {version}; loaded: "
                                         f"{sorted(loaded) or 'none'}")
        return loaded[version]

    def status(self, name: str) -> tuple[dict[int, Servable], dict[int, str]]:
        with self._lock:
            if name not in self._models:
                raise ServingError.not_found(f"no model named {name!r}")
            state = self._models[name]
            return dict(state.loaded), dict(state.failed)

    def names(self) -> list[str]:
        return sorted(self._models)

    # loading

    def refresh(self) -> None:
        """One scan of every model's base path: load what the policy wants, drop what it no longer does."""
        for name, state in self._models.items():
            base = Path(state.entry.base_path)
            wanted = wanted_versions(state.entry, available_versions(base, self.backend))
            for version in wanted:
                if version in state.loaded:
                    continue
                try:
                    servable = self._load(name, version, base / str(version))
                    if self.batching is not None:
                        batcher = Batcher(servable.runner, self.batching, name=f"{name}-v{version}-batch")
                        servable.runner, servable.close = batcher, batcher.close
                except Exception as error:  # noqa: BLE001 - a bad version must not stop the others or the server
                    message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                    if state.failed.get(version) != message:
                        log.warning("model %s version %d failed to load (retrying on the next scan): %s",
                                    name, version, message)
                    with self._lock:
                        state.failed[version] = message
                    continue
                with self._lock:
                    state.loaded[version] = servable
                    state.failed.pop(version, None)
                log.info("serving model %s version %d from %s", name, version, base / str(version))
            with self._lock:
                gone = [v for v in state.loaded if v not in wanted]
                removed = [state.loaded.pop(v) for v in gone]
            for servable in removed:
                log.info("unloaded model %s version %d", name, servable.version)
                servable.close()

    def start(self, poll_seconds: float) -> None:
        """Load now, then re-scan every ``poll_seconds`` (0: never) in a daemon thread."""
        self.refresh()
        if poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, args=(poll_seconds,), name="ftx-version-poller",
                                            daemon=True)
            self._poller.start()

    def _poll(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poller must outlive a bad scan
                log.exception("version scan failed")

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
