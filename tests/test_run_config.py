"""ftx run's config: one table per stage, each the stage's own config, validated before any work starts."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib

import pytest

from benchmarks.bench import BenchConfig
from benchmarks.run_config import SECTIONS, build_config, load_config, to_toml
from export.config import ExportConfig
from training.config import ConfigError, TrainConfig


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest not in ("help", "config", "progress")}


@pytest.mark.parametrize("stage, config_class, positional", [
    ("training.train_cli", TrainConfig, set()),
    ("export.cli", ExportConfig, {"run_dir"}),
    ("benchmarks.cli", BenchConfig, {"export_dir"}),
])
def test_every_flag_of_a_stage_is_a_config_key_and_every_key_a_flag(stage, config_class, positional):
    import importlib

    dests = _dests(_parser(importlib.import_module(stage)))
    fields = {f.name for f in dataclasses.fields(config_class)}
    if config_class is TrainConfig:  # the augment table's keys are flags prefixed augment_
        from training.data.augment import AugmentConfig

        fields = (fields - {"augment"}) | {f"augment_{f.name}" for f in dataclasses.fields(AugmentConfig)}
    assert dests == fields


def test_defaults_print_as_toml_that_reads_back_to_the_same_config():
    config = build_config({})
    text = to_toml(config)
    document = tomllib.loads(text)
    assert list(document) == list(SECTIONS)
    assert document["export"]["name"] == "model" and "run_dir" not in document["export"]
    assert "export_dir" not in document["bench"]
    assert "#   train.learning_rate (will be 0.001)\n" in text and "#   bench.accuracy_images\n" in text
    assert to_toml(build_config(document)) == text


def test_file_tables_override_base_tables_key_by_key(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("run:\n  name: signs\ntrain:\n  epochs: 3\nbench:\n  batch_sizes: 1,32\n"
                    "  serving_batching: [off]\n")
    config = load_config(path, base={"train": {"epochs": 10, "strategy": "feature-extraction"}})
    assert config.train.epochs == 3 and config.train.strategy == "feature-extraction"
    assert config.export.name == "signs"
    assert config.bench.batch_sizes == (1, 32) and config.bench.serving_batching == (False,)


@pytest.mark.parametrize("document, message", [
    ({"trian": {}}, "unknown table(s) ['trian']; allowed: ['run', 'train', 'export', 'serve', 'bench']"),
    ({"train": {"strategy": "all"}}, "[train] strategy must be one of lp-ft, scratch, feature-extraction, "
                                     "fine-tune, two-phase; got 'all'"),
    ({"train": {"epoch": 3}}, "[train] unknown config key(s) ['epoch']; allowed:"),
    ({"train": {"learning_rate": "1e-3"}}, "[train] learning_rate must be float or None, got '1e-3' (str)"),
    ({"export": {"formats": ["onnx", "pt"]}}, "[export] unknown format(s) 'pt'; choose from: all,"),
    ({"export": {"run_dir": "x"}}, "[export] run_dir is set by ftx run"),
    ({"bench": {"batch_sizes": [0, 8]}}, "[bench] batch sizes must be integers >= 1, got [0, 8]"),
    ({"bench": {"serving_modes": "grpc-json"}}, "[bench] unknown serving mode(s) grpc-json"),
    ({"bench": {"export_dir": "x"}}, "[bench] export_dir is set by ftx run"),
    ({"serve": {"images": 0}}, "[serve] images must be between 1 and 256, got 0"),
    ({"serve": {"imgs": 3}}, "[serve] unknown serve key(s) ['imgs']; allowed: ['enabled', 'images', 'threads']"),
    ({"run": {"name": "a b"}}, "[run] model name 'a b' must be"),
    ({"run": "fashion"}, "[run] must be a table of options, got 'fashion'"),
])
def test_a_bad_key_or_value_is_named_with_what_is_allowed(document, message):
    with pytest.raises(ConfigError) as caught:
        build_config(document, source="pipeline.toml")
    assert str(caught.value).startswith("pipeline.toml: ") and message in str(caught.value)


def test_an_unparseable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="broken.toml: cannot parse"):
        load_config(path)
