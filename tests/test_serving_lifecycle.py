"""Version lifecycle under load: 16 gRPC clients see no failed request while versions land, break, heal and vanish.

TF Serving's availability-preserving policy (core/availability_preserving_policy.cc, /tmp/spec/flags.md §4): a
new version is loaded and checked before the old one is unloaded, a version that fails to load shows in
GetModelStatus as END with its error and never takes the serving version down, and only int64-named
directories are versions. Each test runs one fault against an in-process server while ``PredictLoad`` keeps 16
threads sending Predict (no version named) and checks every answer against the Keras model.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from export.run_dir import read_run
from export.samples import load_samples
from export.savedmodel import load_keras_model
from serving.loader import VersionLoader
from serving import model_store
from serving.model_store import ModelStore
from serving.server import ModelServer, ServerLimits
from serving.tfs_config import ModelEntry, VersionPolicy

CLIENTS = 16
POLL_S = 0.1
ATOL = 1e-4
AVAILABLE, END = "AVAILABLE", "END"


@pytest.fixture(scope="module")
def exported(tiny_export, tiny_run):
    """A good version directory of model 'tiny', 12 real test images and the Keras model's probabilities for them."""
    run = read_run(tiny_run)
    samples = load_samples(run, 12)
    return tiny_export / "1", samples.images, load_keras_model(run).predict(samples.images, verbose=0)


class PredictLoad:
    """``CLIENTS`` threads sending gRPC Predict continuously; every answer is checked, every outcome counted."""

    def __init__(self, port: int, images: np.ndarray, expected: np.ndarray) -> None:
        self.port, self.images, self.expected = port, images, expected
        self.requests = []
        for row in range(len(images)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tiny"
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[row:row + 1]))
            self.requests.append(request)
        self.sent = 0
        self.failures: list[str] = []
        self.answers: list[tuple[float, int]] = []  # (time received, model_spec.version.value)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), name=f"load-{i}") for i in range(CLIENTS)]

    def __enter__(self) -> "PredictLoad":
        for thread in self._threads:
            thread.start()
        wait_for(lambda: len(self.answers) >= CLIENTS, 60, "the first answers under load", lambda: self.summary())
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, index: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        step = 0
        try:
            while not self._stop.is_set():
                row = (index + step) % len(self.requests)
                step += 1
                with self._lock:
                    self.sent += 1
                try:
                    response = stub.Predict(self.requests[row], timeout=30)
                    got = tf.make_ndarray(response.outputs["probabilities"])
                    if got.shape != (1, 3) or not np.allclose(got, self.expected[row:row + 1], atol=ATOL):
                        raise AssertionError(f"image {row}: got {got.tolist()}, Keras {self.expected[row].tolist()}")
                    self.answers.append((time.monotonic(), response.model_spec.version.value))
                except (grpc.RpcError, AssertionError) as error:
                    detail = f"{error.code().name}: {error.details()}" if isinstance(error, grpc.RpcError) else error
                    with self._lock:
                        self.failures.append(f"{time.monotonic():.2f} {detail}")
        finally:
            channel.close()

    def versions(self, since: float = 0.0, until: float = float("inf")) -> set[int]:
        """The versions that answered between ``since`` and ``until`` (time.monotonic())."""
        return {version for at, version in list(self.answers) if since <= at <= until}

    def summary(self, fault: str = "") -> str:
        shown = "; ".join(self.failures[:5])
        return (f"{fault}: requests sent {self.sent} / failed {len(self.failures)}"
                + (f" (first: {shown})" if shown else ""))


def wait_for(condition, seconds: float, what: str, describe=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}; {describe()}")
        time.sleep(0.05)


def model_status(port: int, version: int | None = None) -> list[tuple[int, str, int, str]]:
    """GetModelStatus as (version, state, error_code, error_message), highest version first as TF Serving lists."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    if version is not None:
        request.model_spec.version.value = version
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    state_name = get_model_status_pb2.ModelVersionStatus.State.Name
    return [(entry.version, state_name(entry.state), entry.status.error_code, entry.status.error_message)
            for entry in response.model_version_status]


def states(port: int) -> list[tuple[int, str]]:
    return [(version, state) for version, state, _, _ in model_status(port)]


def start_server(base: Path, policy: VersionPolicy = VersionPolicy(), loader=None) -> ModelServer:
    store = ModelStore([ModelEntry("tiny", str(base), policy)], loader or VersionLoader("onnx", 1))
    store.start(POLL_S)
    return ModelServer(store, 0, None, ServerLimits()).start()


def land(source: Path, target: Path) -> None:
    """A complete copy renamed into place, as ftx export (and a careful deploy) does."""
    stage = target.parent.parent / f"stage-{target.name}"
    shutil.copytree(source, stage)
    stage.rename(target)


def counting(loader: VersionLoader):
    """``loader`` and the list of versions it is asked to load, one entry per attempt."""
    attempts: list[int] = []

    def load(name: str, version: int, path: Path):
        attempts.append(version)
        return loader(name, version, path)

    return load, attempts


def predict_error(port: int, version: int) -> grpc.RpcError:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.version.value = version
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 32, 32, 3), np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as caught:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return caught.value


def write_slowly(source: Path, target: Path, chunks: int, pause: float) -> None:
    """``source``'s bytes appended to ``target`` in ``chunks`` pieces, flushed, ``pause`` s apart."""
    data = source.read_bytes()
    step = -(-len(data) // chunks)
    with open(target, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            time.sleep(pause)


def test_a_version_copied_in_slowly_is_served_only_once_complete_and_then_replaces_version_1(exported, tmp_path):
    """The manifest first (in halves), the other files one by one, model.onnx last in 8 chunks: ~20 polls see a
    partial version 2; none of them may serve it or disturb version 1. Then 2 serves and 1 is unloaded."""
    good, images, expected = exported
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    loader, attempts = counting(VersionLoader("onnx", 1))
    server = start_server(base, loader=loader)
    seen_during_copy = set()
    try:
        with PredictLoad(server.grpc_port, images, expected) as load:
            target = base / "2"
            target.mkdir()
            write_slowly(good / "export_manifest.json", target / "export_manifest.json", 2, 0.15)
            seen_during_copy.update(states(server.grpc_port))
            others = sorted(p for p in good.rglob("*") if p.is_file() and p.name not in
                            ("export_manifest.json", "model.onnx"))
            for path in others:
                (target / path.relative_to(good)).parent.mkdir(parents=True, exist_ok=True)
                write_slowly(path, target / path.relative_to(good), 1, 0.05)
                seen_during_copy.update(states(server.grpc_port))
            onnx = (good / "model.onnx").read_bytes()
            step = -(-len(onnx) // 8)
            with open(target / "model.onnx", "wb") as handle:  # in 8 chunks, the status looked at before each
                for start in range(0, len(onnx), step):
                    time.sleep(0.2)
                    status = states(server.grpc_port)
                    seen_during_copy.update(status)
                    assert (1, AVAILABLE) in status, status
                    copied = time.monotonic()  # after the last chunk, version 2 may serve
                    handle.write(onnx[start:start + step])
                    handle.flush()
            wait_for(lambda: states(server.grpc_port) == [(2, AVAILABLE), (1, END)], 20, "2 serving, 1 unloaded",
                     lambda: f"status {model_status(server.grpc_port)}")
            swapped = time.monotonic()
            wait_for(lambda: 2 in load.versions(since=swapped), 10, "an answer from version 2", load.summary)
        final = model_status(server.grpc_port)
        unloaded = predict_error(server.grpc_port, 1)
    finally:
        server.stop(1)
    summary = load.summary("a) slow copy of version 2") + f"; {attempts.count(2) - 1} failed loads of the partial 2"
    print(summary)
    assert load.failures == [], summary
    assert load.versions(until=copied) == {1}, summary  # nothing partial was ever served
    assert (2, AVAILABLE) not in seen_during_copy and (1, AVAILABLE) in seen_during_copy, seen_during_copy
    assert attempts.count(2) >= 5, attempts  # the partial version really was looked at, and refused
    assert final == [(2, AVAILABLE, 0, ""), (1, END, 0, "")]  # a clean unload: END with OK
    assert unloaded.code() == grpc.StatusCode.NOT_FOUND, unloaded.details()


def _garbage_onnx(version_dir: Path) -> None:
    size = (version_dir / "model.onnx").stat().st_size  # same size: only the sha256 can tell
    (version_dir / "model.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())


def _truncated_manifest(version_dir: Path) -> None:
    text = (version_dir / "export_manifest.json").read_bytes()
    (version_dir / "export_manifest.json").write_bytes(text[:len(text) // 2])


def _two_labels(version_dir: Path) -> None:
    """A consistent manifest that lists two labels for a three-class model: only the label count can tell."""
    import hashlib
    import json

    labels = version_dir / "labels.txt"
    labels.write_text("blue\ngreen\n")
    manifest_path = version_dir / "export_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["path"] == "labels.txt":
            entry.update(bytes=labels.stat().st_size, sha256=hashlib.sha256(labels.read_bytes()).hexdigest())
    manifest_path.write_text(json.dumps(manifest))


def _damaged_labels(version_dir: Path) -> None:
    """labels.txt cut inside its last line: the count may still match, the manifest's size and sha256 do not."""
    labels = version_dir / "labels.txt"
    labels.write_bytes(labels.read_bytes()[:-3])


BREAKAGES = {
    "garbage_model_onnx": (_garbage_onnx, r"model\.onnx.*sha256"),
    "truncated_manifest": (_truncated_manifest, r"export_manifest\.json.*(JSON|truncated)"),
    "two_labels": (_two_labels, r"labels\.txt.*2 labels.*3"),
    "damaged_labels": (_damaged_labels, r"labels\.txt is \d+ bytes, the manifest says"),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_b_a_broken_version_2_shows_its_error_keeps_1_serving_and_loads_once_fixed(exported, tmp_path, breakage):
    good, images, expected = exported
    damage, message = BREAKAGES[breakage]
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    loader, attempts = counting(VersionLoader("onnx", 1))
    server = start_server(base, loader=loader)
    try:
        with PredictLoad(server.grpc_port, images, expected) as load:
            broken = tmp_path / "broken"
            shutil.copytree(good, broken)
            damage(broken)
            broken.rename(base / "2")
            wait_for(lambda: model_status(server.grpc_port)[0][:2] == (2, END), 20, "version 2 to fail",
                     lambda: f"status {model_status(server.grpc_port)}")
            failed_status = model_status(server.grpc_port)
            tries = attempts.count(2)
            time.sleep(10 * POLL_S)  # ten polls of an unchanged directory
            unchanged_status, retries_unchanged = model_status(server.grpc_port), attempts.count(2) - tries
            fixed = time.monotonic()
            for path in sorted(p for p in good.rglob("*") if p.is_file()):  # the good files copied in
                shutil.copyfile(path, base / "2" / path.relative_to(good))
            wait_for(lambda: states(server.grpc_port) == [(2, AVAILABLE), (1, END)], 20, "the fixed 2 to serve",
                     lambda: f"status {model_status(server.grpc_port)}")
            swapped = time.monotonic()
            wait_for(lambda: 2 in load.versions(since=swapped), 10, "an answer from version 2", load.summary)
        final = model_status(server.grpc_port)
    finally:
        server.stop(1)
    summary = load.summary(f"b) broken version 2 ({breakage})")
    print(summary, "| status while broken:", failed_status)
    assert load.failures == [], summary
    assert load.versions(until=fixed) == {1}, summary
    (version, state, code, text), serving = failed_status[0], failed_status[1:]
    assert (version, state) == (2, END) and code != 0, failed_status
    assert re.search(message, text), f"error_message {text!r} does not name the problem ({message})"
    assert serving == [(1, AVAILABLE, 0, "")], failed_status
    assert unchanged_status == failed_status and retries_unchanged == 0, (unchanged_status, retries_unchanged)
    assert attempts.count(2) > tries  # tried again once its directory changed
    assert final == [(2, AVAILABLE, 0, ""), (1, END, 0, "")]


def test_c_deleting_the_serving_version_2_under_policy_all_falls_back_to_1(exported, tmp_path):
    good, images, expected = exported
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    shutil.copytree(good, base / "2")
    server = start_server(base, VersionPolicy("all"))
    try:
        assert states(server.grpc_port) == [(2, AVAILABLE), (1, AVAILABLE)]
        with PredictLoad(server.grpc_port, images, expected) as load:
            time.sleep(0.5)
            before = load.versions()
            deleted = time.monotonic()
            shutil.rmtree(base / "2")
            wait_for(lambda: states(server.grpc_port) == [(1, AVAILABLE)], 20, "2 gone from the status",
                     lambda: f"status {model_status(server.grpc_port)}")
            gone = time.monotonic()
            time.sleep(1.0)
        forgotten = None
        try:
            model_status(server.grpc_port, version=2)
        except grpc.RpcError as error:
            forgotten = error
    finally:
        server.stop(1)
    summary = load.summary("c) serving version 2 deleted, policy all")
    print(summary)
    assert load.failures == [], summary
    assert before == {2}, before  # requests naming no version go to the highest
    assert load.versions(since=gone + 0.5) == {1}, summary
    assert deleted < gone
    assert forgotten is not None and forgotten.code() == grpc.StatusCode.NOT_FOUND
    assert forgotten.details() == "Could not find version 2 of model tiny"


def test_e_a_base_path_that_vanishes_for_a_while_keeps_its_versions_serving(exported, tmp_path):
    """file_system_storage_path_source.cc: a base path that cannot be listed is an error of that poll, not an
    empty list of versions, so a directory swap (mv away, mv back) or a flaky mount unloads nothing."""
    good, images, expected = exported
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    server = start_server(base)
    try:
        with PredictLoad(server.grpc_port, images, expected) as load:
            time.sleep(0.3)
            base.rename(tmp_path / "away")
            time.sleep(10 * POLL_S)  # ten polls without a base path
            assert states(server.grpc_port) == [(1, AVAILABLE)]
            (tmp_path / "away").rename(base)
            time.sleep(5 * POLL_S)
        assert states(server.grpc_port) == [(1, AVAILABLE)]
    finally:
        server.stop(1)
    summary = load.summary("e) base path moved away and back")
    print(summary)
    assert load.failures == [] and load.versions() == {1}, summary


def test_e_a_rename_that_lands_while_the_base_path_is_listed_is_not_an_empty_poll(tmp_path, monkeypatch):
    """The race CI once hit in the test above: the listing named ``1``, the base path moved before ``1`` was
    looked at, and the poll saw "no version directory", unloading the served version. The rename is made to
    land between the listing's first entry and its end; the poll must keep what it listed or say it saw nothing."""
    base = tmp_path / "tiny"
    for name in ("1", "2", "notes"):
        (base / name).mkdir(parents=True)
    real_scandir = os.scandir

    class RenamedMidway:
        def __init__(self, path):
            self.listing = real_scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.listing.close()

        def __iter__(self):
            for number, entry in enumerate(self.listing):
                if number == 1:
                    base.rename(tmp_path / "away")
                yield entry

    monkeypatch.setattr(model_store.os, "scandir", RenamedMidway)
    assert model_store.version_directories(base, set(), "tiny") is None
    monkeypatch.setattr(model_store.os, "scandir", real_scandir)
    (tmp_path / "away").rename(base)
    assert model_store.version_directories(base, set(), "tiny") == {1: base / "1", 2: base / "2"}


def test_f_a_manifest_naming_files_outside_its_version_is_refused(exported, tmp_path):
    """A manifest is data from disk: an entry like ``assets.extra/../../x`` must not make the loader hash (and
    report the size of) files outside the version directory."""
    import json

    good, _, _ = exported
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    (tmp_path / "secret").write_bytes(b"x" * 123)
    manifest_path = base / "1" / "export_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"].append({"path": "assets.extra/../../../secret", "bytes": 123, "sha256": "0" * 64})
    manifest_path.write_text(json.dumps(manifest))
    server = start_server(base)
    try:
        ((version, state, code, message),) = model_status(server.grpc_port)
    finally:
        server.stop(1)
    assert (version, state, code) == (1, END, grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert "outside the version" in message and "123" not in message.split("lists")[1]


ODD_AT_START = ("²", "99999999999999999999", "abc", "007", ".3.x.partial", "4.not_blessed")
ODD_WHILE_POLLING = ("²²", "9223372036854775808", "1e3", " 5", "+6", "-7", "١٢")  # int64 max + 1, Arabic digits


def test_d_odd_directory_names_are_ignored_at_start_and_while_polling(exported, tmp_path):
    """Each odd directory holds a complete, loadable model: were its name taken for a version, it would show.

    ftx takes canonical ASCII int64 names only (export/versions.py); TF Serving's SimpleAtoi would also take
    ``007``, `` 5``, ``+6`` and ``-7``.
    """
    good, images, expected = exported
    base = tmp_path / "tiny"
    shutil.copytree(good, base / "1")
    for name in ODD_AT_START:
        shutil.copytree(good, base / name)
    (base / "8").write_text("a file, not a directory")
    server = start_server(base)
    try:
        at_start = model_status(server.grpc_port)
        with PredictLoad(server.grpc_port, images, expected) as load:
            for name in ODD_WHILE_POLLING:
                land(good, base / name)
            time.sleep(10 * POLL_S)
            while_polling = model_status(server.grpc_port)
            land(good, base / "3")
            wait_for(lambda: states(server.grpc_port) == [(3, AVAILABLE), (1, END)], 20, "version 3 to serve",
                     lambda: f"status {model_status(server.grpc_port)}")
            swapped = time.monotonic()
            wait_for(lambda: 3 in load.versions(since=swapped), 10, "an answer from version 3", load.summary)
    finally:
        server.stop(1)
    summary = load.summary("d) odd directory names")
    print(summary)
    assert load.failures == [], summary
    assert at_start == [(1, AVAILABLE, 0, "")]
    assert while_polling == [(1, AVAILABLE, 0, "")]
    assert load.versions() == {1, 3}, summary
