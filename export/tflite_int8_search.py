"""Accuracy-aware full-integer TFLite: keep in float only the layers int8 hurts most, as few as will do.

Why: a fixed rule ("the first two convolutions stay float") costs speed on
every model and still misses the accuracy target on some. Here the model is
calibrated once (the converter's calibrate-only mode), each quantized layer's
error is measured with TF's ``QuantizationDebugger`` (RMSE of the quantized
output against the float one, in units of its quantization step), and the
model is quantized with the k most sensitive layers kept float for k = 0, 1,
2, 3, 4, 6, 8, ... The first k that the parity gate's own accuracy rule
passes on held-back *validation* images wins (fewest float layers is
fastest): its drop against the float model is within ``max_drop`` points, or
its paired 95% interval reaches zero, so that those images cannot tell it from
the float model. A raw difference on a small validation split is noise (one
of the demo's 120 images is 0.83 points), and the search must not refuse
what the gate would bless. Calibration uses training images; the test split is never
read, so the parity gate's verdict on it stays an independent check.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.parity_stats import PairedAccuracy
from export.tflite_export import one_image_batches, run_litert

FLOAT_LAYER_STEPS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
DEBUG_IMAGES = 16  # images the per-layer error is averaged over: enough to rank, cheap with NumericVerify ops


@dataclass(frozen=True)
class LayerError:
    """One quantized layer's output error, as QuantizationDebugger measures it."""

    tensor: str  # the layer's output tensor name: what the quantizer's denylist takes
    op: str
    rmse_per_scale: float  # RMSE against float, in quantization steps (0.29 is pure rounding noise)

    def as_dict(self) -> dict:
        return {"layer": self.tensor.split(";")[0], "tensor": self.tensor, "op": self.op,
                "rmse_per_scale": round(self.rmse_per_scale, 4)}


@dataclass(frozen=True)
class Int8Trial:
    """One candidate: which layers stayed float and how it did on the selection images."""

    float_layers: tuple[str, ...]
    accuracy: float
    agreement: float  # top-1 agreement with the float model
    paired: PairedAccuracy  # images lost and gained against the float model
    max_drop: float

    @property
    def drop_points(self) -> float:
        """Float accuracy minus this one, in points."""
        return self.paired.drop_points

    @property
    def within_target(self) -> bool:
        return self.drop_points <= self.max_drop + 1e-9

    @property
    def passed(self) -> bool:
        """The parity gate's accuracy rule: within the target, or not worse beyond chance."""
        return self.within_target or self.paired.drop_interval()[0] <= 0.0

    def as_dict(self) -> dict:
        low, high = self.paired.drop_interval()
        return {"float_layers": list(self.float_layers), "accuracy": round(self.accuracy, 6),
                "top1_agreement": round(self.agreement, 6), "drop_points": round(self.drop_points, 3),
                "drop_interval_95": [round(low, 3), round(high, 3)], "images_lost": self.paired.lost,
                "images_gained": self.paired.gained, "passed": self.passed,
                "passed_by": "within target" if self.within_target else
                             "not worse beyond chance" if self.passed else None}


@dataclass(frozen=True)
class Int8Choice:
    """The search's result: the model kept, and the record of how it was chosen."""

    model: bytes = field(repr=False)
    kept: Int8Trial  # the trial whose model this is
    max_drop: float
    reference_accuracy: float
    images: int
    split: str
    ranking: tuple[LayerError, ...]
    trials: tuple[Int8Trial, ...]

    @property
    def float_layers(self) -> tuple[str, ...]:
        return self.kept.float_layers

    @property
    def met(self) -> bool:
        """False: no candidate passed; the most accurate one was kept."""
        return self.kept.passed

    def summary(self) -> str:
        """One line for the log: the outcome against the target, and on how many images."""
        kept = self.kept
        low, high = kept.paired.drop_interval()
        verdict = ("within the target" if kept.within_target else
                   "over the target but not worse beyond chance: too few images to tell" if kept.passed else
                   "NOT within reach of any candidate")
        return (f"accuracy {kept.accuracy:.4f} against float {self.reference_accuracy:.4f}: "
                f"{-kept.drop_points:+.2f} points ({kept.paired.lost} images lost, {kept.paired.gained} gained; "
                f"drop 95% interval {low:.2f} to {high:.2f}); {verdict} (target: {self.max_drop:g} points) on "
                f"{self.images} {self.split} images, {len(self.trials)} candidate(s) tried")

    def as_dict(self, ranked: int = 12) -> dict:
        return {"method": "accuracy-aware: layers ranked by QuantizationDebugger RMSE/scale on calibration "
                          "images, the fewest kept float that pass the parity gate's accuracy rule on the "
                          "selection images",
                "selection_split": self.split, "selection_images": self.images,
                "max_drop_points": self.max_drop, "target_met": self.met,
                "float_accuracy": round(self.reference_accuracy, 6), "float_layers": list(self.float_layers),
                "most_sensitive": [layer.as_dict() for layer in self.ranking[:ranked]],
                "trials": [trial.as_dict() for trial in self.trials]}


class CalibratedModel:
    """A SavedModel calibrated once on representative images, quantizable many ways without recalibrating."""

    def __init__(self, saved_model_dir: Path, representative_images: np.ndarray, uint8_io: bool = False) -> None:
        import tensorflow as tf

        if representative_images is None or len(representative_images) == 0:
            raise ValueError("full-integer int8 needs representative images from the training data")

        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: one_image_batches(representative_images)
        converter.experimental_new_quantizer = True
        converter._experimental_calibrate_only = True  # noqa: SLF001 - the switch QuantizationDebugger itself sets
        self.calibrated = converter.convert()
        self.uint8_io = uint8_io

    def quantize(self, float_layers: Sequence[str] = (), *, numeric_verify: bool = False) -> bytes:
        """Full-integer int8, except the ops whose output tensors are named in ``float_layers``."""
        import tensorflow as tf
        from tensorflow.lite.python import convert

        io_type = tf.uint8 if self.uint8_io and not numeric_verify else tf.float32
        return convert.mlir_quantize(self.calibrated, input_data_type=io_type, output_data_type=io_type,
                                     enable_numeric_verify=numeric_verify,
                                     denylisted_nodes=list(float_layers) or None)

    def layer_errors(self, images: np.ndarray) -> list[LayerError]:
        """Every quantized layer's error on ``images``, worst first."""
        import tensorflow as tf

        debug_model = self.quantize(numeric_verify=True)
        with warnings.catch_warnings():  # the debugger still builds the deprecated tf.lite.Interpreter
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                                debug_dataset=lambda: one_image_batches(images))
            debugger.run()
        table = io.StringIO()
        debugger.layer_statistics_dump(table)
        table.seek(0)
        errors = [LayerError(row["tensor_name"], row["op_name"],
                             float(np.sqrt(float(row["mean_squared_error"])) / float(row["scale"])))
                  for row in csv.DictReader(table) if float(row["scale"]) > 0]
        return sorted(errors, key=lambda layer: -layer.rmse_per_scale)


def search(calibrated: CalibratedModel, reference: np.ndarray, images: np.ndarray, labels: np.ndarray, *,
           max_drop: float = 1.0, split: str = "validation", debug_images: np.ndarray | None = None,
           steps: Sequence[int] = FLOAT_LAYER_STEPS, threads: int = 2) -> Int8Choice:
    """Quantize with 0, 1, 2, ... of the most sensitive layers in float; keep the first that passes.

    ``reference`` is the float model's probabilities on ``images`` (the
    selection set, with ``labels``). ``debug_images`` rank the layers
    (calibration images; default the selection images' first few).
    """
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0 points, got {max_drop}")
    if len(images) == 0 or len(images) != len(labels) or len(reference) != len(labels):
        raise ValueError("the selection images, their labels and the float model's outputs must be non-empty "
                         f"and of one length (got {len(images)}, {len(labels)}, {len(reference)})")
    ranking = calibrated.layer_errors(images[:DEBUG_IMAGES] if debug_images is None else debug_images)
    reference_top1 = reference.argmax(axis=1)
    reference_accuracy = float(np.mean(reference_top1 == labels))
    trials: list[Int8Trial] = []
    models: list[bytes] = []
    for count in sorted({min(step, len(ranking)) for step in steps}):
        float_layers = tuple(layer.tensor for layer in ranking[:count])
        model = calibrated.quantize(float_layers)
        top1 = run_litert(model, images, threads=threads).argmax(axis=1)
        trials.append(Int8Trial(float_layers, float(np.mean(top1 == labels)), float(np.mean(top1 == reference_top1)),
                                PairedAccuracy.of(reference_top1 == labels, top1 == labels), max_drop))
        models.append(model)
        if trials[-1].passed:
            break
    best = len(trials) - 1 if trials[-1].passed else max(range(len(trials)), key=lambda i: trials[i].accuracy)
    return Int8Choice(model=models[best], kept=trials[best], max_drop=max_drop, reference_accuracy=reference_accuracy,
                      images=len(labels), split=split, ranking=tuple(ranking), trials=tuple(trials))
