"""TrainConfig validation, config files and the ``ftx train`` flags."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from training.config import ConfigError, TrainConfig, read_config_file
from training.data.augment import AugmentConfig
from training.train_cli import add_arguments, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("field,value,message", [
    ("backbone", "vgg19", "backbone must be one of"),
    ("strategy", "finetune", "strategy must be one of"),
    ("epochs", 0, "epochs must be an integer >= 1, got 0"),
    ("image_size", 16, "image_size must be between 32 and 1024, got 16"),
    ("dropout", 1.5, "dropout must be in [0, 1), got 1.5"),
    ("learning_rate", -1.0, "learning_rate must be in (0, 10), got -1.0"),
    ("validation_split", 1.0, "validation_split must be in (0, 1), got 1.0"),
    ("class_weight", "auto", "class_weight must be one of none, balanced; got 'auto'"),
])
def test_bad_values_name_the_field_and_value(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        dataclasses.replace(TrainConfig(), **{field: value}).validate()


def test_every_config_field_has_a_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {action.dest for action in parser._actions}
    for field in dataclasses.fields(TrainConfig):
        if field.name == "augment":
            assert {"augment_flip", "augment_rotation", "augment_zoom", "augment_contrast",
                    "augment_brightness"} <= dests
        else:
            assert field.name in dests, f"no flag for {field.name}"


def test_precedence_defaults_file_flags(tmp_path):
    config_file = tmp_path / "train.toml"
    config_file.write_text('[train]\nbackbone = "efficientnet_lite0"\nepochs = 3\n'
                           '[train.augment]\nflip = true\n')
    config = config_from_args(parse("--config", str(config_file), "--epochs", "7", "--augment-zoom", "0.1"))
    assert config.backbone == "efficientnet_lite0"  # from the file
    assert config.epochs == 7  # flag beats file
    assert config.augment.flip is True and config.augment.zoom == 0.1
    assert config.batch_size == TrainConfig().batch_size  # default


def test_yaml_config_and_unknown_keys(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("strategy: two-phase\nfine-tune-epochs: 4\n")
    assert config_from_args(parse("--config", str(good))).fine_tune_epochs == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("stratgy: two-phase\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['stratgy'\]"):
        config_from_args(parse("--config", str(bad)))
    with pytest.raises(ConfigError, match="must be .toml, .yaml"):
        read_config_file(good.rename(tmp_path / "c.ini"))


def test_learning_rate_defaults_follow_the_strategy():
    assert TrainConfig(strategy="feature-extraction").resolved_learning_rate == 1e-3
    assert TrainConfig(strategy="fine-tune").resolved_learning_rate == 1e-4
    assert TrainConfig(strategy="fine-tune", learning_rate=0.01).resolved_learning_rate == 0.01


def test_cli_help_lists_every_flag_with_defaults():
    result = subprocess.run([sys.executable, "-m", "training.cli", "train", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ("--strategy", "--fine-tune-layers", "--label-smoothing", "--class-weight", "--augment-flip",
                 "--early-stopping-patience", "--mixed-precision", "--distribute", "--config", "--strict"):
        assert flag in result.stdout
    assert "(default: mobilenet_v2)" in " ".join(result.stdout.split())


def test_cli_rejects_bad_value_with_exit_2():
    result = subprocess.run([sys.executable, "-m", "training.cli", "train", "--strategy", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "strategy must be one of lp-ft, scratch, feature-extraction, fine-tune, two-phase; got 'nope'" in result.stderr


@pytest.mark.parametrize("name,text,message", [
    ("bad.toml", "[train\nepochs = 3", "cannot parse"),
    ("bad.yaml", "epochs: [1, 2\n", "cannot parse"),
    ("types.yaml", "learning_rate: 1e-3\n", "learning_rate must be float or None, got '1e-3' (str)"),
    ("augment.toml", "[train]\naugment = true\n", "augment must be a table of options, got True"),
])
def test_malformed_config_files_exit_2_with_a_message(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "training.cli", "train", "--config", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_bad_weights_file_exits_2_before_any_training(tmp_path, tiny_dataset):
    weights = tmp_path / "not-weights.pth"
    weights.write_bytes(b"garbage")
    result = subprocess.run([sys.executable, "-m", "training.cli", "train", "--data", str(tiny_dataset),
                             "--weights", str(weights), "--image-size", "32", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "not a readable torch checkpoint for mobilenet_v2" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_the_default_strategy_is_lp_ft_and_fills_its_own_options():
    config = TrainConfig().resolved()
    assert (config.strategy, config.epochs, config.learning_rate, config.optimizer) == ("lp-ft", 100, 1e-3, "adamw")
    assert (config.fine_tune_epochs, config.fine_tune_learning_rate, config.fine_tune_layers) == (12, 1e-4, 0)
    assert config.label_smoothing == 0.1
    assert config.augment == AugmentConfig(rotation=0.05, zoom=0.1)


def test_the_older_strategies_keep_their_defaults():
    config = TrainConfig(strategy="fine-tune").resolved()
    assert (config.epochs, config.learning_rate, config.optimizer, config.fine_tune_layers) == (10, 1e-4, "adam", 30)
    assert config.label_smoothing == 0.0 and not config.augment.enabled
    two = TrainConfig(strategy="two-phase").resolved()
    assert (two.fine_tune_epochs, two.fine_tune_learning_rate) == (10, 1e-5)


def test_a_given_option_beats_the_strategy_default():
    config = TrainConfig(epochs=5, label_smoothing=0.0, fine_tune_layers=40, optimizer="sgd").resolved()
    assert (config.epochs, config.label_smoothing, config.fine_tune_layers, config.optimizer) == (5, 0.0, 40, "sgd")


def test_an_augment_flag_changes_only_its_part_of_the_strategy_augmentation():
    config = config_from_args(parse("--augment-flip", "--augment-zoom", "0.2")).resolved()
    assert config.augment == AugmentConfig(flip=True, rotation=0.05, zoom=0.2)
    off = config_from_args(parse("--augment-rotation", "0", "--augment-zoom", "0")).resolved()
    assert not off.augment.enabled
    plain = config_from_args(parse("--strategy", "fine-tune", "--augment-flip")).resolved()
    assert plain.augment == AugmentConfig(flip=True)  # fine-tune's own augmentation is none


def test_warmup_cosine_schedule_rises_for_one_epoch_then_decays_to_zero():
    from training.fit import learning_rate_schedule
    from training.strategies import Phase

    schedule = learning_rate_schedule(Phase("fine-tune", "last-layers", 12, 1e-4, False, "warmup-cosine"), 9)
    rates = [float(schedule(step)) for step in (0, 9, 9 + 99 // 2, 108)]
    assert rates[0] == 0.0 and abs(rates[1] - 1e-4) < 1e-9
    assert abs(rates[2] - 0.5e-4) < 1e-6 and rates[3] < 1e-9
    assert learning_rate_schedule(Phase("head", "frozen", 3, 1e-3, True), 9) == 1e-3
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        learning_rate_schedule(Phase("head", "frozen", 3, 1e-3, True, "step"), 9)
