"""The models a server holds, kept in step with their version directories as TF Serving keeps them.

Each model's ``base_path`` holds version directories named by canonical int64
numbers; any other name (``.3.x.partial``, ``3.not_blessed``, ``²``, a number
beyond int64) is ignored with one log line. The version policy (latest N, all,
specific) says which versions are *aspired*; loading follows TF Serving's
availability-preserving policy (core/availability_preserving_policy.cc): a new
version is loaded and checked in full before an old one is unloaded, and the
last serving version is only unloaded once an aspired one is serving, so a
version that fails to load never takes the served one down. A failed version
shows in the status with its error and is tried again when its directory
changes. Versions deleted from disk disappear.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from export.versions import REJECTED_SUFFIX, parse_version, rejected_dir, rejected_versions
from serving.errors import ServingError
from serving.tfs_config import ModelEntry

log = logging.getLogger(__name__)
MAX_FINGERPRINT_FILES = 10_000  # a version directory with more files than this is not fingerprinted past it
MAX_REASON_BYTES = 4096  # of a NOT_BLESSED file, read to say why a version is not served

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class Loadable:
    """What the store needs of a loaded version (serving.servable.Servable has it)."""

    version: int

    def close(self) -> None: ...


Loader = Callable[[str, int, Path], Loadable]


@dataclass
class VersionState:
    """One version's place in its lifecycle, as GetModelStatus reports it."""

    version: int
    state: str = START
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    servable: Loadable | None = None
    fingerprint: tuple = ()  # of the directory when a load failed: unchanged means do not retry


@dataclass
class ModelState:
    entry: ModelEntry
    versions: dict[int, VersionState] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)  # odd directory names already logged
    no_versions: str = ""  # why nothing can be served, while no version directory is there (logged once)


def version_directories(base_path: Path, ignored: set[str], model: str) -> dict[int, Path] | None:
    """Canonical int64-named directories under ``base_path`` (other names are logged once each), or None when
    the base path cannot be listed: a transient error (a directory swap, NFS) must not unload what serves,
    as FileSystemStoragePathSource refuses to emit an empty list for a missing base path."""
    try:
        with os.scandir(base_path) as listing:  # d_type from the listing itself: no stat that a rename can race
            children = [(entry.name, _is_directory(entry)) for entry in listing]
    except OSError as error:
        if "<base path>" not in ignored:
            ignored.add("<base path>")
            log.warning("model %s: cannot list %s (%s); its versions stay as they are", model, base_path,
                        error.strerror or error)
        return None
    ignored.discard("<base path>")
    if not base_path.is_dir():
        return None  # renamed away while it was listed: this poll saw no stable directory
    found = {}
    for name, is_directory in children:
        child = base_path / name
        version = parse_version(name)
        if version is not None and is_directory:
            found[version] = child
        elif child.name not in ignored:
            ignored.add(child.name)
            if child.name.endswith(REJECTED_SUFFIX) and parse_version(child.name[:-len(REJECTED_SUFFIX)]) is not None:
                log.info("model %s: not serving %s: the parity gate did not bless it (see its NOT_BLESSED)",
                         model, child)
            elif not child.name.startswith("."):  # ftx's own staging directories are expected
                log.info("model %s: ignoring %s (not a version directory: versions are int64 numbers)",
                         model, child)
    return found


def _is_directory(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a symlinked version directory, as TF Serving does
    except OSError:
        return False


def why_no_versions(base_path: Path) -> str:
    """What TF Serving says when a base path holds no version, and which exports the parity gate kept out."""
    rejected = []
    for version in rejected_versions(base_path):
        try:
            with open(rejected_dir(base_path, version) / "NOT_BLESSED", "rb") as marker:
                reasons = marker.read(MAX_REASON_BYTES).decode("utf-8", "replace").split("\n")
        except OSError:
            reasons = []
        reason = next((line.strip() for line in reasons if line.strip()), "no NOT_BLESSED file saying why")
        rejected.append(f"{version}{REJECTED_SUFFIX} (not blessed: {reason})")
    text = f"no version directory under {base_path} (versions are integers, e.g. {base_path / '1'})"
    return text + (f"; skipped {', '.join(rejected)}" if rejected else "")


def aspired_versions(entry: ModelEntry, on_disk: list[int]) -> list[int]:
    policy = entry.policy
    if policy.kind == "all":
        return sorted(on_disk)
    if policy.kind == "specific":
        return sorted(v for v in on_disk if v in policy.versions)
    return sorted(on_disk)[-policy.latest:]


def fingerprint(directory: Path) -> tuple:
    """Names, sizes and mtimes of the files below ``directory``: changes when a copy makes progress."""
    entries = []
    try:
        for path in sorted(itertools.islice(directory.rglob("*"), MAX_FINGERPRINT_FILES)):
            info = path.stat()
            entries.append((path.relative_to(directory).as_posix(), info.st_size, info.st_mtime_ns))
    except OSError as error:
        entries.append(("<unreadable>", str(error)))
    return tuple(entries)


def _load_error(error: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, ServingError):
        return error.code, error.message
    text = str(error).strip().splitlines()
    return grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {text[0] if text else ''}"


class ModelStore:
    """Thread-safe lookup of serving versions by model name and version or label, and their lifecycle."""

    def __init__(self, entries: list[ModelEntry], loader: Loader) -> None:
        self._load = loader
        self._models = {entry.name: ModelState(entry) for entry in entries}
        self._removed: dict[str, ModelState] = {}  # models a reload dropped: their END states stay reportable
        self._lock = threading.Lock()  # guards _models and every VersionState
        self._refreshing = threading.Lock()  # one scan at a time (poller and config reloads)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # lookup

    def get(self, name: str, version: int | None = None, label: str | None = None) -> Loadable:
        """The servable a ModelSpec names, with TF Serving's errors (server_core.cc, basic_manager.cc)."""
        if not name:
            raise ServingError.invalid("ModelSpec has no name specified.")
        with self._lock:
            state = self._models.get(name)
            if label is not None:
                labels = state.entry.labels if state is not None else {}
                if label not in labels:
                    raise ServingError.invalid(f"Unrecognized servable version label: {label}")
                version = labels[label]
            serving = {} if state is None else {v: s.servable for v, s in state.versions.items()
                                                if s.state == AVAILABLE and s.servable is not None}
        if version is None:
            if serving:
                return serving[max(serving)]
            raise ServingError.not_found(f"Servable not found for request: Latest({name})")
        if version not in serving:
            raise ServingError.not_found(f"Servable not found for request: Specific({name}, {version})")
        return serving[version]

    def states(self, name: str) -> dict[int, VersionState]:
        """Copies of every version's state (GetModelStatus)."""
        with self._lock:
            state = self._models.get(name) or self._removed.get(name)
            if state is None:
                raise ServingError.not_found(f"Could not find any versions of model {name}")
            return {v: replace(s) for v, s in state.versions.items()}

    def no_versions(self, name: str) -> str:
        """Why model ``name`` has no version directory to serve ("" when it has one)."""
        with self._lock:
            state = self._models.get(name)
            return state.no_versions if state is not None else ""

    def label_version(self, name: str, label: str) -> int:
        with self._lock:
            labels = self._models[name].entry.labels if name in self._models else {}
            if label not in labels:
                raise ServingError.invalid(f"Unrecognized servable version label: {label}")
            return labels[label]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def serves(self, name: str) -> bool:
        with self._lock:
            return name in self._models

    # configuration

    def reconfigure(self, entries: list[ModelEntry], allow_unavailable_labels: bool = False) -> None:
        """Apply a new model list live (HandleReloadConfigRequest, --model_config_file polling).

        New models are added and loaded, removed ones unloaded (their versions stay in the status as END,
        as TF Serving's ServableStateMonitor keeps them), and policies and
        labels of the others changed. Labels must name serving versions unless
        ``allow_unavailable_labels`` (then only labels that are new or unchanged
        may point elsewhere), as ServerCore::UpdateModelVersionLabelMap checks.
        """
        with self._refreshing:
            if self._stop.is_set():
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            self._check_labels(entries, allow_unavailable_labels)  # before anything changes, as upstream
            with self._lock:
                removed = [state for name, state in self._models.items() if name not in {e.name for e in entries}]
                for entry in entries:
                    if entry.name in self._models:
                        self._models[entry.name].entry = replace(entry, labels=self._models[entry.name].entry.labels)
                    else:
                        self._models[entry.name] = ModelState(replace(entry, labels={}))
                        self._removed.pop(entry.name, None)
                for state in removed:
                    del self._models[state.entry.name]
                    self._removed[state.entry.name] = state  # GetModelStatus still reports its versions as END
            for state in removed:
                for version_state in state.versions.values():
                    self._unload(state.entry.name, version_state)
            self._refresh_locked()
            with self._lock:
                for entry in entries:
                    self._models[entry.name].entry = entry

    def _check_labels(self, entries: list[ModelEntry], allow_unavailable: bool) -> None:
        with self._lock:
            for entry in entries:
                state = self._models.get(entry.name)
                for label, version in entry.labels.items():
                    existing = state.entry.labels.get(label) if state is not None else None
                    allowed = allow_unavailable and (existing is None or existing == version)
                    current = state.versions.get(version) if state is not None else None
                    if not allowed and (current is None or current.state != AVAILABLE):
                        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                           f"Request to assign label to version {version} of model {entry.name}, "
                                           "which is not currently available for inference")

    # loading

    def refresh(self) -> None:
        """One scan of every model's base path, then load and unload until the policy is met."""
        with self._refreshing:
            if not self._stop.is_set():
                self._refresh_locked()

    def _refresh_locked(self) -> None:
        with self._lock:
            models = list(self._models.values())
        for state in models:
            self._refresh_model(state)

    def _refresh_model(self, state: ModelState) -> None:
        name = state.entry.name
        on_disk = version_directories(Path(state.entry.base_path), state.ignored, name)
        if on_disk is None:
            return
        aspired = aspired_versions(state.entry, list(on_disk))
        note = "" if on_disk else why_no_versions(Path(state.entry.base_path))
        if note and note != state.no_versions:
            log.warning("model %s: %s", name, note)  # TF Serving: "No versions of servable ... found"
        state.no_versions = note
        with self._lock:
            for version in [v for v, s in state.versions.items() if v not in on_disk and s.servable is None]:
                del state.versions[version]  # deleted from disk: gone from the status too
        for version in sorted(aspired, reverse=True):  # the highest first, as the policy loads
            current = state.versions.get(version)
            if current is not None and current.state in (AVAILABLE, LOADING):
                continue
            contents = fingerprint(on_disk[version])
            if current is not None and current.state == END and current.error_code != grpc.StatusCode.OK \
                    and current.fingerprint == contents:
                continue  # failed before and nothing changed since
            if self._stop.is_set():
                return
            self._try_load(state, version, on_disk[version], contents)
        self._unload_unaspired(state, aspired)

    def _try_load(self, state: ModelState, version: int, directory: Path, contents: tuple) -> None:
        name = state.entry.name
        with self._lock:
            version_state = state.versions.setdefault(version, VersionState(version))
            version_state.state, version_state.error_code, version_state.error_message = LOADING, grpc.StatusCode.OK, ""
        try:
            servable = self._load(name, version, directory)
        except Exception as error:  # noqa: BLE001 - a bad version must never stop the others or the server
            code, message = _load_error(error)
            log.warning("model %s version %d failed to load (tried again when %s changes): %s", name, version,
                        directory, message)
            with self._lock:
                version_state.state, version_state.error_code = END, code
                version_state.error_message, version_state.fingerprint = message, contents
            return
        with self._lock:
            version_state.state, version_state.servable, version_state.fingerprint = AVAILABLE, servable, ()
        log.info("serving model %s version %d from %s", name, version, directory)

    def _unload_unaspired(self, state: ModelState, aspired: list[int]) -> None:
        """AvailabilityPreservingPolicy: unload the lowest un-aspired serving version while there is no
        aspired version, an aspired one is serving, or more than one un-aspired version is serving."""
        while True:
            with self._lock:
                serving = {v for v, s in state.versions.items() if s.state == AVAILABLE}
                unaspired = sorted(serving - set(aspired))
                if not unaspired or not (not aspired or serving & set(aspired) or len(unaspired) > 1):
                    return
                version_state = state.versions[unaspired[0]]
                version_state.state = UNLOADING
            self._unload(state.entry.name, version_state)

    def _unload(self, name: str, version_state: VersionState) -> None:
        with self._lock:
            servable, version_state.servable = version_state.servable, None
            version_state.state = END
        if servable is not None:
            servable.close()
            log.info("unloaded model %s version %d", name, version_state.version)

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
        """Stop polling and unload everything."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        with self._refreshing:
            with self._lock:
                models = list(self._models.values())
            for state in models:
                for version_state in list(state.versions.values()):
                    self._unload(state.entry.name, version_state)
