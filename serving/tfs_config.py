"""TF Serving's config files: ``models.config``, ``batching.config``, ``monitoring.config``.

Each is built as its protobuf message and written in the text format
``tensorflow_model_server`` reads (``--model_config_file``,
``--batching_parameters_file``, ``--monitoring_config_file``); reading one back
parses it with the same messages and then checks what the parser cannot
(increasing ``allowed_batch_sizes``, labels naming served versions, ...), so
ftx refuses a file before the real server would.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from serving.tfs_protos import (batching_parameters_class, model_server_config_class, monitoring_config_class,
                                ssl_config_class)

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
SSL_CONFIG = "ssl.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's own default path
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class ServingConfigError(ValueError):
    """A config file or value TF Serving would refuse; the message says what is expected."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions TF Serving loads: the latest N, all, or specific ones."""

    kind: str = "latest"  # latest | all | specific
    latest: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """``latest``, ``latest:N``, ``all`` or ``specific:1,2``."""
        kind, _, value = text.strip().partition(":")
        try:
            if kind == "latest":
                return cls("latest", latest=int(value) if value else 1).check()
            if kind == "all" and not value:
                return cls("all")
            if kind == "specific":
                return cls("specific", versions=tuple(int(v) for v in value.split(",") if v.strip())).check()
        except ValueError:
            pass
        raise ServingConfigError(f"version policy must be latest, latest:N, all or specific:V1,V2,... ; got {text!r}")

    def check(self) -> "VersionPolicy":
        if self.kind == "latest" and self.latest < 1:
            raise ServingConfigError(f"latest:N needs N >= 1, got {self.latest}")
        if self.kind == "specific" and (not self.versions or min(self.versions) < 1):
            raise ServingConfigError(f"specific versions must be positive integers, got {list(self.versions)}")
        return self


@dataclass(frozen=True)
class ModelEntry:
    """One model TF Serving serves: its name, the directory holding its integer versions, policy and labels."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)  # e.g. {"stable": 1, "canary": 2}


def models_config(entries: list[ModelEntry]):
    """The ``ModelServerConfig`` message for ``entries`` (checked)."""
    if not entries:
        raise ServingConfigError("models.config needs at least one model")
    message = model_server_config_class()()
    for entry in entries:
        model = message.model_config_list.config.add(name=entry.name, base_path=entry.base_path,
                                                     model_platform="tensorflow")
        if entry.policy.kind == "latest":
            model.model_version_policy.latest.num_versions = entry.policy.latest
        elif entry.policy.kind == "all":
            model.model_version_policy.all.SetInParent()
        else:
            model.model_version_policy.specific.versions.extend(entry.policy.versions)
        for label, version in entry.labels.items():
            model.version_labels[label] = version
    check_models_config(message)
    return message


def model_entries(message) -> list[ModelEntry]:
    """The inverse of :func:`models_config`: the entries a parsed ``ModelServerConfig`` describes."""
    check_models_config(message)
    entries = []
    for model in message.model_config_list.config:
        policy = model.model_version_policy
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            parsed = VersionPolicy("all")
        elif choice == "specific":
            parsed = VersionPolicy("specific", versions=tuple(policy.specific.versions))
        else:  # TF Serving's default is the latest version
            parsed = VersionPolicy("latest", latest=policy.latest.num_versions if choice == "latest" else 1)
        entries.append(ModelEntry(model.name, model.base_path, parsed, dict(model.version_labels)))
    return entries


def check_models_config(message) -> None:
    """What TF Serving checks at load time that the parser does not."""
    if message.WhichOneof("config") != "model_config_list":
        raise ServingConfigError("models.config must hold a model_config_list (custom_model_config is not supported)")
    names = [model.name for model in message.model_config_list.config]
    if not names:
        raise ServingConfigError("models.config lists no model")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ServingConfigError(f"models.config names these models more than once: {duplicates}")
    for model in message.model_config_list.config:
        where = f"model {model.name!r}"
        if not model.name:
            raise ServingConfigError("every model in models.config needs a name")
        if not model.base_path:
            raise ServingConfigError(f"{where} needs a base_path (the directory holding its version directories)")
        if model.model_platform not in ("", "tensorflow"):
            raise ServingConfigError(f"{where}: model_platform must be 'tensorflow', got {model.model_platform!r}")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions < 1:
            raise ServingConfigError(f"{where}: latest.num_versions must be >= 1")
        specific = set(policy.specific.versions) if policy.WhichOneof("policy_choice") == "specific" else None
        for label, version in model.version_labels.items():
            if not LABEL_PATTERN.match(label):
                raise ServingConfigError(f"{where}: version label {label!r} must start with a letter and hold only "
                                         "letters, digits, '-' and '_'")
            if version < 1:
                raise ServingConfigError(f"{where}: label {label!r} must name a positive version, got {version}")
            if specific is not None and version not in specific:
                raise ServingConfigError(f"{where}: label {label!r} names version {version}, which the specific "
                                         f"policy {sorted(specific)} does not load")


@dataclass(frozen=True)
class BatchingSettings:
    """TF Serving's ``BatchingParameters``; ``for_device`` gives the starting points of its tuning guide."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "model_server_batch_threads"  # --enable_batching without a file, as TF Serving names it

    @classmethod
    def for_device(cls, device: str, cores: int | None = None) -> "BatchingSettings":
        """CPU: one batch thread per core, no batching wait and no padding (batching helps a CPU little;
        padding a batch of 9 to 16 doubles its work, and ONNX Runtime needs no fixed shapes).
        GPU: larger batches, a short wait to fill them, padding to a few shapes, few threads feeding the device."""
        cores = cores or os.cpu_count() or 1
        if device == "cpu":
            return cls(max_batch_size=32, batch_timeout_micros=0, num_batch_threads=cores, max_enqueued_batches=100)
        if device == "gpu":
            return cls(max_batch_size=128, batch_timeout_micros=1000, num_batch_threads=max(1, min(cores, 4)),
                       max_enqueued_batches=100, allowed_batch_sizes=(8, 16, 32, 64, 128))
        raise ServingConfigError(f"batching defaults exist for cpu and gpu, got {device!r}")

    def message(self):
        message = batching_parameters_class()()
        message.max_batch_size.value = self.max_batch_size
        message.batch_timeout_micros.value = self.batch_timeout_micros
        message.num_batch_threads.value = self.num_batch_threads
        message.max_enqueued_batches.value = self.max_enqueued_batches
        message.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        message.pad_variable_length_inputs = self.pad_variable_length_inputs
        message.thread_pool_name.value = self.thread_pool_name
        check_batching(message)
        return message

    @classmethod
    def from_message(cls, message) -> "BatchingSettings":
        """Fields the file leaves out take TF Serving's own defaults."""
        check_batching(message)
        defaults = cls(max_batch_size=1000, batch_timeout_micros=0, num_batch_threads=os.cpu_count() or 1,
                       max_enqueued_batches=10)  # BasicBatchScheduler::Options defaults
        value = lambda name: getattr(message, name).value if message.HasField(name) else getattr(defaults, name)  # noqa: E731
        return cls(max_batch_size=value("max_batch_size"), batch_timeout_micros=value("batch_timeout_micros"),
                   num_batch_threads=value("num_batch_threads"), max_enqueued_batches=value("max_enqueued_batches"),
                   allowed_batch_sizes=tuple(message.allowed_batch_sizes),
                   pad_variable_length_inputs=message.pad_variable_length_inputs,
                   thread_pool_name=message.thread_pool_name.value if message.HasField("thread_pool_name")
                   else "batch_threads")  # SharedBatchScheduler::Options' default


def check_batching(message) -> None:
    """TF Serving's own rules for ``BatchingParameters``."""
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
        if message.HasField(name) and getattr(message, name).value < 1:
            raise ServingConfigError(f"batching: {name} must be >= 1, got {getattr(message, name).value}")
    if message.HasField("batch_timeout_micros") and message.batch_timeout_micros.value < 0:
        raise ServingConfigError(f"batching: batch_timeout_micros must be >= 0, got {message.batch_timeout_micros.value}")
    sizes = list(message.allowed_batch_sizes)
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
            raise ServingConfigError(f"batching: allowed_batch_sizes must be positive and increasing, got {sizes}")
        if message.HasField("max_batch_size") and sizes[-1] != message.max_batch_size.value:
            raise ServingConfigError(f"batching: the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                                     f"max_batch_size ({message.max_batch_size.value})")


def monitoring_config(path: str = PROMETHEUS_PATH, enable: bool = True):
    if not path.startswith("/"):
        raise ServingConfigError(f"the Prometheus path must start with '/', got {path!r}")
    message = monitoring_config_class()()
    message.prometheus_config.enable = enable
    message.prometheus_config.path = path
    return message


def check_ssl(message) -> None:
    """TF Serving's SSLConfig holds PEM text itself, not file names."""
    for name in ("server_key", "server_cert"):
        if "-----BEGIN" not in getattr(message, name):
            raise ServingConfigError(f"ssl.config: {name} must hold the PEM text itself (-----BEGIN ...)")
    if message.client_verify and "-----BEGIN" not in message.custom_ca:
        raise ServingConfigError("ssl.config: client_verify needs custom_ca, the PEM of the CA that signs clients")


PARSERS = {MODELS_CONFIG: (model_server_config_class, check_models_config),
           BATCHING_CONFIG: (batching_parameters_class, check_batching),
           MONITORING_CONFIG: (monitoring_config_class, lambda message: None),
           SSL_CONFIG: (ssl_config_class, check_ssl)}


def read_config(path: Path | str, kind: str):
    """Parse a config file of ``kind`` (models.config, batching.config, monitoring.config) and check it."""
    if kind not in PARSERS:
        raise ServingConfigError(f"unknown config kind {kind!r}; one of {', '.join(PARSERS)}")
    message_class, check = PARSERS[kind]
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ServingConfigError(f"cannot read {kind} file {path}: {error.strerror or error}") from None
    try:
        message = text_format.Parse(text, message_class()())
    except text_format.ParseError as error:
        raise ServingConfigError(f"{path} is not a valid {kind} (protobuf text format): {error}") from None
    check(message)
    return message


def to_text(message) -> str:
    return text_format.MessageToString(message)
