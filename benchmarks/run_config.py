"""``PipelineConfig``: one file that drives ``ftx run`` (train -> export -> serving smoke test -> bench -> report).

Each stage's table is that stage's own config (``[train]`` is ``ftx train``'s
:class:`TrainConfig`, ``[export]`` is ``ftx export``'s, ``[bench]`` is
``ftx bench``'s), so every flag of a stage is a key of its table and every key
is a flag. The whole file is validated before any work starts; an error names
the table, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench import BenchConfig, BenchError
from export.config import ExportConfig
from training.config import ConfigError, TrainConfig, check_field_types, known_keys, read_config_document

SECTIONS = ("run", "train", "export", "serve", "bench")
STAGES = ("train", "export", "serve", "bench", "report")
FROM_PIPELINE = "(set by ftx run)"  # placeholder for paths the pipeline fills in (run_dir, export_dir)


@dataclass
class RunSettings:
    """``[run]``: where the pipeline lives and what it is called."""

    name: str = "model"  # the model name TF Serving serves it under; also [export] name unless that is set
    out: str | None = None  # pipeline directory; default FTX_HOME/pipelines/<name>
    progress: bool | None = None  # progress bars; default: when stderr is a terminal

    def validate(self) -> "RunSettings":
        check_field_types(self)
        from export.versions import VersionError, check_model_name

        try:
            check_model_name(self.name)
        except VersionError as error:
            raise ConfigError(str(error)) from None
        return self


@dataclass
class SmokeSettings:
    """``[serve]``: the serving smoke test (``ftx serve`` on the export, real gRPC and REST on 127.0.0.1)."""

    enabled: bool = True
    images: int = 8  # test images sent through each API
    threads: int = 0  # ONNX Runtime threads in the server (0: every core)

    def validate(self) -> "SmokeSettings":
        check_field_types(self)
        if not 1 <= self.images <= 256:
            raise ConfigError(f"images must be between 1 and 256, got {self.images}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: every core), got {self.threads}")
        return self


@dataclass
class PipelineConfig:
    run: RunSettings = field(default_factory=RunSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=lambda: ExportConfig(run_dir=FROM_PIPELINE))
    serve: SmokeSettings = field(default_factory=SmokeSettings)
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(export_dir=FROM_PIPELINE))

    def section(self, name: str) -> dict[str, Any]:
        """One table as plain values (the fingerprint of a stage hashes this)."""
        return dataclasses.asdict(getattr(self, name))


def build_config(values: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a whole document (tables by section name) into a :class:`PipelineConfig`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected tables {', '.join(SECTIONS)}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {unknown}; allowed: {list(SECTIONS)}")
    tables = {}
    for name in SECTIONS:
        table = values.get(name) or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table of options, got {table!r}")
        tables[name] = dict(table)

    def checked(name: str, make):
        try:
            return make(tables[name])
        except (ConfigError, BenchError) as error:
            raise ConfigError(f"{source}: [{name}] {error}") from None
        except TypeError as error:  # a dataclass refusing a value of the wrong shape
            raise ConfigError(f"{source}: [{name}] {error}") from None

    run = checked("run", lambda t: RunSettings(**known_keys(RunSettings, t, "run")).validate())
    train = checked("train", lambda t: TrainConfig.from_dict(t).validate())
    for key in ("run_dir",):
        if key in tables["export"]:
            raise ConfigError(f"{source}: [export] {key} is set by ftx run (the train stage's run directory)")
    tables["export"].setdefault("name", run.name)
    export = checked("export", lambda t: ExportConfig.from_dict({**t, "run_dir": FROM_PIPELINE}).validate())
    serve = checked("serve", lambda t: SmokeSettings(**known_keys(SmokeSettings, t, "serve")).validate())
    if "export_dir" in tables["bench"]:
        raise ConfigError(f"{source}: [bench] export_dir is set by ftx run (the export stage's version)")

    def bench_config(t: dict) -> BenchConfig:
        config = BenchConfig.from_dict({**t, "export_dir": FROM_PIPELINE})
        config.check()
        return config

    bench = checked("bench", bench_config)
    return PipelineConfig(run=run, train=train, export=export, serve=serve, bench=bench)


def load_config(path: Path | str | None, base: dict[str, Any] | None = None) -> PipelineConfig:
    """``base`` (e.g. the demo's tables), then the file's tables on top, key by key."""
    merged: dict[str, Any] = {name: dict(table) for name, table in (base or {}).items()}
    if path is not None:
        document = read_config_document(path)
        for name, table in document.items():
            if isinstance(table, dict) and isinstance(merged.get(name), dict):
                merged[name].update(table)
            else:
                merged[name] = table
    return build_config(merged, str(path) if path else "config")


def to_toml(config: PipelineConfig) -> str:
    """The resolved config as TOML; options left to a run-time default are listed as comments."""
    import tomli_w

    document: dict[str, dict] = {}
    unset: list[str] = []
    train = config.train.resolved()  # what the run will use for the options the strategy decides
    for name in SECTIONS:
        values = config.section(name)
        if name == "export":
            values.pop("run_dir")
        if name == "bench":
            values.pop("export_dir")
        kept = {}
        for key, value in values.items():
            if value is None:
                will = getattr(train, key) if name == "train" else None
                if dataclasses.is_dataclass(will):
                    will = {k: v for k, v in dataclasses.asdict(will).items() if v}
                unset.append(f"{name}.{key}" + (f" (will be {will!r})" if will is not None else ""))
            else:
                kept[key] = list(value) if isinstance(value, tuple) else value
        document[name] = kept
    text = tomli_w.dumps(document)
    if unset:
        text += "\n# left to their run-time defaults (see each stage's --help):\n"
        text += "".join(f"#   {key}\n" for key in unset)
    return text
