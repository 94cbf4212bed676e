"""``ExportConfig``: every option of ``ftx export`` in one checked dataclass.

Flags, a config file and Python all build the same object; it is validated
before any conversion starts and written, resolved, into the export manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from export.formats import DEFAULT_FORMATS, FormatError, parse_formats
from export.onnx_export import DEFAULT_OPSET
from export.onnx_variants import CALIBRATION_METHODS
from export.parity import ThresholdError, parse_overrides
from export.versions import VersionError, check_model_name
from training.config import ConfigError, check_field_types, known_keys


@dataclass
class ExportConfig:
    """Options of one export. ``run_dir`` and ``name`` have no default."""

    run_dir: str = ""
    name: str = ""
    out: str = "exports"
    version: int | None = None
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))
    opset: int = DEFAULT_OPSET
    parity_images: int = 500
    calibration_images: int = 500  # every training image of a small dataset; more representative ranges
    onnx_calibration: str = "percentile"  # onnx-int8-static: minmax, percentile or entropy
    int8_float_convs: int = 2  # onnx-int8-static (and tflite-int8 without the search): first N convs stay float32
    int8_search: bool = True  # tflite-int8: keep float the fewest most-sensitive layers that meet int8_max_drop
    int8_max_drop: float = 1.0  # points of validation accuracy the searched tflite-int8 may lose
    thresholds: list[str] = field(default_factory=list)  # TARGET.METRIC=VALUE overrides
    allow_unblessed: bool = False
    tflite_uint8_io: bool = False
    convert_timeout: int = 1800
    seed: int = 0

    def validate(self) -> "ExportConfig":
        """Raise :class:`ConfigError` naming the option, the value and what is allowed."""
        check_field_types(self)
        for name in ("formats", "thresholds"):
            items = getattr(self, name)
            if isinstance(items, str):
                items = items.split(",")
            if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
                raise ConfigError(f"{name} must be a list of strings, got {getattr(self, name)!r}")
            setattr(self, name, list(items))
        if not self.run_dir:
            raise ConfigError("run_dir is required: the training run directory to export")
        if not self.name:
            raise ConfigError("name is required: the model name TF Serving will serve it under (--name)")
        try:
            check_model_name(self.name)
            self.formats = list(parse_formats(self.formats))
            parse_overrides(self.thresholds)
        except (VersionError, FormatError, ThresholdError) as error:
            raise ConfigError(str(error)) from None
        if self.version is not None and self.version < 1:
            raise ConfigError(f"version must be a positive integer, got {self.version}")
        if self.onnx_calibration not in CALIBRATION_METHODS:
            raise ConfigError(f"onnx_calibration must be one of {', '.join(CALIBRATION_METHODS)}, "
                              f"got {self.onnx_calibration!r}")
        if not 7 <= self.opset <= 21:
            raise ConfigError(f"opset must be between 7 and 21, got {self.opset}")
        if self.int8_float_convs < 0:
            raise ConfigError(f"int8_float_convs must be >= 0 (0 quantizes every convolution), "
                              f"got {self.int8_float_convs}")
        if not 0.0 <= self.int8_max_drop <= 100.0:
            raise ConfigError(f"int8_max_drop must be between 0 and 100 points, got {self.int8_max_drop}")
        for name in ("parity_images", "calibration_images", "convert_timeout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.tflite_uint8_io and "tflite-int8" not in self.formats:
            raise ConfigError("tflite_uint8_io applies to the tflite-int8 format, which is not selected")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExportConfig":
        """Build from a plain dict (file contents); unknown keys are an error, not ignored."""
        return cls(**known_keys(cls, values, "export"))
