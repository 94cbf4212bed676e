"""TF Serving config files: written, parsed back with the protobuf messages, and refused when TF Serving would."""

from __future__ import annotations

import pytest

from serving.config_cli import parse_labels, write_configs
from serving.tfs_config import (BATCHING_CONFIG, MODELS_CONFIG, MONITORING_CONFIG, BatchingSettings, ModelEntry,
                                ServingConfigError, VersionPolicy, models_config, read_config)
from training.cli import main


def test_written_configs_parse_back_with_every_field(tmp_path):
    (tmp_path / "exports" / "fashion").mkdir(parents=True)
    paths = write_configs(tmp_path / "exports", ["fashion"], tmp_path / "cfg", VersionPolicy.parse("specific:1,2"),
                          parse_labels(["stable=1", "canary=2"]), BatchingSettings.for_device("cpu", cores=2))
    models = read_config(paths[MODELS_CONFIG], MODELS_CONFIG)
    (model,) = models.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "fashion", str((tmp_path / "exports" / "fashion").resolve()), "tensorflow")
    assert list(model.model_version_policy.specific.versions) == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    batching = read_config(paths[BATCHING_CONFIG], BATCHING_CONFIG)
    assert BatchingSettings.from_message(batching) == BatchingSettings(
        max_batch_size=32, batch_timeout_micros=0, num_batch_threads=2, max_enqueued_batches=100)
    monitoring = read_config(paths[MONITORING_CONFIG], MONITORING_CONFIG)
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_hand_written_tf_serving_files_parse(tmp_path):
    """The forms TF Serving's own docs use, including omitted fields that take the server's defaults."""
    (tmp_path / "m.config").write_text('model_config_list { config { name: "a" base_path: "/models/a" '
                                       'model_platform: "tensorflow" model_version_policy { latest { num_versions: 2 }}}}')
    (tmp_path / "b.config").write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 500 }\n"
                                       "pad_variable_length_inputs: true\n")
    assert read_config(tmp_path / "m.config", MODELS_CONFIG).model_config_list.config[0].model_version_policy.latest.num_versions == 2
    settings = BatchingSettings.from_message(read_config(tmp_path / "b.config", BATCHING_CONFIG))
    assert (settings.max_batch_size, settings.batch_timeout_micros, settings.max_enqueued_batches) == (128, 500, 10)
    assert settings.pad_variable_length_inputs


@pytest.mark.parametrize("kind, text, message", [
    (BATCHING_CONFIG, "max_batch_size { value: 32 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n",
     r"last allowed_batch_sizes entry \(16\) must equal max_batch_size \(32\)"),
    (BATCHING_CONFIG, "allowed_batch_sizes: 16\nallowed_batch_sizes: 8\n", "must be positive and increasing"),
    (BATCHING_CONFIG, "num_batch_threads { value: 0 }", "num_batch_threads must be >= 1, got 0"),
    (BATCHING_CONFIG, "max_batch_sizes { value: 3 }", "not a valid batching.config"),
    (MODELS_CONFIG, 'model_config_list { config { name: "a" } }', "model 'a' needs a base_path"),
    (MODELS_CONFIG, 'model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }',
     r"more than once: \['a'\]"),
    (MODELS_CONFIG, 'model_config_list { config { name: "a" base_path: "/x" version_labels { key: "1x" value: 1 } } }',
     "must start with a letter"),
    (MONITORING_CONFIG, "prometheus_config { enabled: true }", "not a valid monitoring.config"),
])
def test_files_tf_serving_would_refuse_are_refused(tmp_path, kind, text, message):
    (tmp_path / "f").write_text(text)
    with pytest.raises(ServingConfigError, match=message):
        read_config(tmp_path / "f", kind)


def test_policies_and_labels_are_checked():
    assert VersionPolicy.parse("latest:3") == VersionPolicy("latest", latest=3)
    assert VersionPolicy.parse("all").kind == "all"
    for bad in ("newest", "latest:0", "specific:", "specific:a", "all:2"):
        with pytest.raises(ServingConfigError, match="version policy|latest:N|specific versions"):
            VersionPolicy.parse(bad)
    with pytest.raises(ServingConfigError, match="names version 3, which the specific policy"):
        models_config([ModelEntry("a", "/m/a", VersionPolicy.parse("specific:1,2"), {"stable": 3})])
    with pytest.raises(ServingConfigError, match="LABEL=VERSION"):
        parse_labels(["stable"])


def test_cli_writes_files_and_prints_the_server_command(tmp_path, capsys):
    (tmp_path / "exports" / "fashion" / "1").mkdir(parents=True)
    assert main(["serving-config", str(tmp_path / "exports"), "--name", "fashion", "--device", "gpu"]) == 0
    out = capsys.readouterr().out
    assert f"--model_config_file={tmp_path / 'exports' / MODELS_CONFIG}" in out and "tensorflow/serving" in out
    assert BatchingSettings.from_message(read_config(tmp_path / "exports" / BATCHING_CONFIG, BATCHING_CONFIG)) \
        == BatchingSettings.for_device("gpu")
    assert main(["serving-config", str(tmp_path / "exports"), "--name", "missing"]) == 2
    assert "no model directory" in capsys.readouterr().err
    assert not (tmp_path / "exports" / "missing").exists()


def test_printed_launch_lines_allow_labels_tf_serving_refuses_at_start(tmp_path, capsys):
    """server_core.cc UpdateModelVersionLabelMap: at start no version is available yet, so TF Serving refuses
    a config with labels unless --allow_version_labels_for_unavailable_models is set."""
    (tmp_path / "exports" / "fashion" / "1").mkdir(parents=True)
    assert main(["serving-config", str(tmp_path / "exports"), "--name", "fashion", "--version-policy", "all",
                 "--label", "stable=1"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("tensorflow_model_server",
                                                                                        "docker run"))]
    assert len(lines) == 2 and all("--allow_version_labels_for_unavailable_models=true" in line for line in lines)
    assert main(["serving-config", str(tmp_path / "exports"), "--name", "fashion"]) == 0
    assert "allow_version_labels" not in capsys.readouterr().out
