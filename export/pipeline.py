"""``ftx export``: a training run -> one staged, parity-checked, versioned export directory.

Everything for a version (SavedModel, ONNX, TFLite, labels, parity results,
manifest) is written into a hidden temporary directory beside
``EXPORT_ROOT/NAME/`` and renamed into place at the end, so TF Serving's
poller never sees half an export. Each format converts and runs on its own:
one that fails is recorded (the others finish) and the export is not blessed.
A blessed export becomes ``NAME/<version>``; a refused one
``NAME/<version>.not_blessed`` (kept for inspection, never served) unless
``allow_unblessed`` publishes it anyway, marked ``NOT_BLESSED``.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export.config import ExportConfig
from export.formats import FORMATS
from export.manifest import MANIFEST_FILE, MANIFEST_VERSION, file_entries, library_versions, utc_now
from export.parity import FormatParity, Verdict, compare, parse_overrides, thresholds_for
from export.run_dir import TrainedRun, read_run
from export.samples import Samples, load_samples
from export.versions import VersionError, choose_version, rejected_dir
from training import staging
from training.atomic import write_json, write_text
from training.interrupts import InterruptWatch

log = logging.getLogger(__name__)

PARITY_FILE = "parity.json"
LABELS_FILE = "labels.txt"
BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"
SAVEDMODEL_PARTS = ("saved_model.pb", "fingerprint.pb", "signature_defs.pb", "variables", "assets", "assets.extra")
INPUT_SPEC = {"name": "images", "dtype": "float32", "shape": [None, None, None, 3], "layout": "NHWC",
              "color": "RGB", "range": [0, 255], "note": "raw pixels; the model applies its own preprocessing"}
SIGNATURES = {
    "serving_default": {"inputs": {"images": "float32 [batch, H, W, 3] RGB 0-255"},
                        "outputs": {"probabilities": "float32 [batch, C]", "class_ids": "int32 [batch]",
                                    "class_names": "string [batch]"}},
    "serving_bytes": {"inputs": {"images_bytes": "string [batch] JPEG/PNG/BMP/GIF"},
                      "outputs": "as serving_default"},
    "serving_examples": {"inputs": {"examples": "string [batch] tf.Example with bytes feature image/encoded"},
                         "outputs": "as serving_default"},
    "classify": {"method": "tensorflow/serving/classify", "inputs": {"inputs": "string [batch] tf.Example"},
                 "outputs": {"classes": "string [batch, C]", "scores": "float32 [batch, C]"}},
}


@dataclass
class FormatOutcome:
    """One format: its files in the version directory, or why it failed."""

    name: str
    files: list[str] = field(default_factory=list)
    convert_seconds: float = 0.0
    parity_seconds: float = 0.0
    error: str | None = None
    details: dict = field(default_factory=dict)  # format-specific record for the manifest (the int8 search)


@dataclass
class ExportResult:
    directory: Path  # NAME/<version>, or NAME/<version>.not_blessed when refused
    version: int
    verdict: Verdict
    outcomes: dict[str, FormatOutcome]
    manifest: dict
    seconds: float

    @property
    def blessed(self) -> bool:
        return self.verdict.blessed

    @property
    def published(self) -> bool:
        """Whether TF Serving (and ``ftx serve``) will load it: an integer-named directory."""
        return self.directory.name.isdigit()


class ExportError(RuntimeError):
    """The export could not be made at all (as opposed to one format failing)."""


def export_run(config: ExportConfig, progress: bool | None = None) -> ExportResult:
    """Export ``config.run_dir``; raises RunDirError/ConfigError/VersionError before any work on bad input."""
    with InterruptWatch() as watch:
        return _export_run(config, progress, watch)


def _export_run(config: ExportConfig, progress: bool | None, watch: InterruptWatch) -> ExportResult:
    started = time.perf_counter()
    config.validate()
    run = read_run(config.run_dir)
    overrides = parse_overrides(config.thresholds)
    model_dir = Path(config.out).expanduser() / config.name
    staging.sweep(model_dir, ".", "export")  # stages of exports killed with SIGKILL: they never published
    version = choose_version(model_dir, config.version)
    formats = list(config.formats)
    needs_calibration = "onnx-int8-static" in formats or "tflite-int8" in formats
    bar = _progress(3 + len(formats), progress)

    bar.set_postfix_str("reading images")
    samples = load_samples(run, config.parity_images, seed=config.seed)
    calibration = load_samples(run, config.calibration_images, split="train", seed=config.seed) \
        if needs_calibration else None
    bar.update()
    bar.set_postfix_str("Keras reference")
    from export.savedmodel import load_keras_model
    from training.keras_predict import predict_array

    keras_model = load_keras_model(run)
    reference = predict_array(keras_model, samples.images)
    reference_uncropped = reference if samples.uncropped is samples.images else \
        predict_array(keras_model, samples.uncropped)
    bar.update()
    log.info("parity on %d %s images; Keras accuracy there %.4f", len(samples.labels), samples.split,
             float(np.mean(reference.argmax(axis=1) == samples.labels)))

    stage = staging.make_stage(model_dir, f".{version}.")
    try:
        exporter = _FormatExporter(run, config, stage, samples, calibration, keras_model, watch)
        outcomes: dict[str, FormatOutcome] = {}
        results: dict[str, FormatParity] = {}
        for name in formats:
            bar.set_postfix_str(name)
            outcome, probabilities = exporter.export(name)
            outcomes[name] = outcome
            if probabilities is not None:
                expected = reference_uncropped if FORMATS[name].variant == "bytes" else reference
                try:
                    results[name] = compare(name, expected, probabilities, samples.labels,
                                            thresholds_for(name, overrides))
                    _log_parity(results[name], outcome)
                except ValueError as error:  # e.g. a converter changed the output shape
                    outcome.error = f"ran, but its output cannot be compared: {error}"
                    log.error("%s: %s", name, outcome.error)
            bar.update()
            watch.raise_if_received()
        verdict = Verdict(results=results, failures={n: o.error for n, o in outcomes.items() if o.error},
                          images=len(samples.labels), split=samples.split)
        for warning in verdict.warnings:
            log.warning("%s", warning)
        bar.set_postfix_str("manifest")
        destination = model_dir / str(version) if verdict.blessed or config.allow_unblessed \
            else rejected_dir(model_dir, version)
        manifest = _write_records(stage, run, config, version, verdict, outcomes, destination,
                                  time.perf_counter() - started)
        if destination.exists() or (model_dir / str(version)).exists():
            raise VersionError(f"version {version} of {config.name} appeared at {destination} while this export "
                               "ran (another export?); nothing was published, run again to take the next version")
        watch.raise_if_received()  # an interrupt whose exception something swallowed must not publish
        os.replace(stage, destination)
        staging.release(stage)
        bar.update()
    except BaseException:
        staging.discard(stage)
        raise
    finally:
        bar.close()
    return ExportResult(directory=destination, version=version, verdict=verdict, outcomes=outcomes,
                        manifest=manifest, seconds=time.perf_counter() - started)


class _FormatExporter:
    """Converts and runs one format at a time inside the stage; failures are caught per format."""

    def __init__(self, run: TrainedRun, config: ExportConfig, stage: Path, samples: Samples,
                 calibration: Samples | None, keras_model, watch: InterruptWatch) -> None:
        self.run, self.config, self.stage, self.watch = run, config, stage, watch
        self.samples, self.calibration, self.keras_model = samples, calibration, keras_model
        self.loaded_savedmodel = None
        self.savedmodel_error: str | None = None
        self.onnx_fp32 = None  # the finished fp32 ONNX proto, source of the ONNX variants
        self.onnx_error: str | None = None
        self.threads = os.cpu_count() or 1
        self.details: dict = {}  # the current format's record for the manifest, filled by its converter

    def export(self, name: str) -> tuple[FormatOutcome, np.ndarray | None]:
        spec = FORMATS[name]
        outcome = FormatOutcome(name)
        converters: dict[str, Callable[[str], list[str]]] = {
            "savedmodel": self._savedmodel, "onnx": self._onnx, "tflite": self._tflite}
        started = time.perf_counter()
        self.details = outcome.details
        try:
            outcome.files = converters[spec.family](spec.variant)
        except Exception as error:  # noqa: BLE001 - converters raise anything; one format must not sink the rest
            self.watch.reraise_if_interrupted(error)
            log.debug("%s failed:\n%s", name, traceback.format_exc())
            outcome.error = f"conversion failed: {type(error).__name__}: {error}"
            log.error("%s: %s", name, outcome.error)
            return outcome, None
        outcome.convert_seconds = time.perf_counter() - started
        started = time.perf_counter()
        try:
            probabilities = self._predict(name)
        except Exception as error:  # noqa: BLE001 - a model the runtime cannot run is that format's failure
            self.watch.reraise_if_interrupted(error)
            log.debug("%s failed to run:\n%s", name, traceback.format_exc())
            outcome.error = f"converted but could not be run: {type(error).__name__}: {error}"
            log.error("%s: %s", name, outcome.error)
            return outcome, None
        outcome.parity_seconds = time.perf_counter() - started
        return outcome, probabilities

    # conversions: return the files written, relative to the stage

    def _savedmodel(self, variant: str) -> list[str]:
        if self.loaded_savedmodel is None:  # written once, checked through two signatures
            if self.savedmodel_error is not None:
                raise ExportError(f"the SavedModel failed: {self.savedmodel_error}")
            import tensorflow as tf

            from export.savedmodel import save_serving_savedmodel

            scratch = self.stage / ".savedmodel"
            try:
                save_serving_savedmodel(self.run, scratch, self.config.name, self.samples, self.keras_model)
                for part in scratch.iterdir():
                    part.rename(self.stage / part.name)
                self.loaded_savedmodel = tf.saved_model.load(str(self.stage))
            except Exception as error:
                self.savedmodel_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                for part in SAVEDMODEL_PARTS:  # no half SavedModel in the version directory
                    path = self.stage / part
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return [p for p in SAVEDMODEL_PARTS if (self.stage / p).exists()]

    def _onnx(self, variant: str) -> list[str]:
        from export.onnx_export import convert_saved_model, finish_model
        from export.onnx_variants import make_variant

        if self.onnx_fp32 is None:  # converted once; the variants start from it even when fp32 is not shipped
            if self.onnx_error is not None:
                raise ExportError(f"the fp32 ONNX model it starts from failed: {self.onnx_error}")
            try:
                raw = convert_saved_model(self.run.saved_model_path, self.config.opset, self.config.convert_timeout)
                self.onnx_fp32 = finish_model(raw, self.run.class_names, self._onnx_metadata())
            except Exception as error:
                self.onnx_error = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                raise
        model = self.onnx_fp32 if variant in ("fp32", "bytes") else make_variant(
            self.onnx_fp32, variant, self.calibration.images if self.calibration else None,
            calibration=self.config.onnx_calibration, float_convs=self.config.int8_float_convs)
        filename = FORMATS[_format_name("onnx", variant)].filename
        (self.stage / filename).write_bytes(model.SerializeToString())
        return [filename]

    def _tflite(self, variant: str) -> list[str]:
        from export import tflite_export
        from export.tflite_metadata import ModelDescription, populate

        representative = self.calibration.images if self.calibration else None
        filename = FORMATS[_format_name("tflite", variant)].filename
        if variant == "int8" and self.config.int8_search:
            model = self._searched_int8()
        else:
            model = tflite_export.convert(self.run.saved_model_path, variant, representative,
                                          uint8_io=self.config.tflite_uint8_io and variant == "int8",
                                          float_convs=self.config.int8_float_convs if variant == "int8" else 0)
        described = ModelDescription(
            name=self.config.name, class_names=tuple(self.run.class_names),
            description=f"{self.run.backbone} image classifier ({variant}, {self.run.image_size} px), fine-tuned "
                        f"by ftx on {len(self.run.class_names)} classes",
            quantized_input=self.config.tflite_uint8_io and variant == "int8")
        model = populate(tflite_export.add_labels(model, self.run.class_names), described)
        (self.stage / filename).write_bytes(model)
        return [filename]

    def _searched_int8(self) -> bytes:
        """tflite-int8 by the accuracy-aware search, chosen on validation images; its record goes to details."""
        from export.tflite_int8_search import CalibratedModel, search
        from training.keras_predict import predict_array

        selection = load_samples(self.run, self.config.parity_images, split="valid", seed=self.config.seed)
        calibrated = CalibratedModel(self.run.saved_model_path, self.calibration.images,
                                     uint8_io=self.config.tflite_uint8_io)
        choice = search(calibrated, predict_array(self.keras_model, selection.images), selection.images,
                        selection.labels, max_drop=self.config.int8_max_drop, split=selection.split,
                        debug_images=self.calibration.images[:16], threads=self.threads)
        self.details["int8_search"] = choice.as_dict()
        log.log(logging.INFO if choice.kept.within_target else logging.WARNING,
                "tflite-int8: %d layer(s) kept float; %s", len(choice.float_layers), choice.summary())
        return choice.model

    def _onnx_metadata(self) -> dict[str, object]:
        from training.backbones.table import get_backbone

        return {"model_name": self.config.name, "backbone": self.run.backbone, "image_size": self.run.image_size,
                "input": INPUT_SPEC, "preprocessing": get_backbone(self.run.backbone).preprocessing.as_dict()}

    # runners: probabilities on the parity images

    def _predict(self, name: str) -> np.ndarray:
        spec = FORMATS[name]
        if spec.family == "savedmodel":
            from export.savedmodel import predict_signature
            from export.signatures import SIGNATURE_BYTES, SIGNATURE_TENSOR

            if spec.variant == "bytes":
                return predict_signature(self.loaded_savedmodel, SIGNATURE_BYTES, self.samples.encoded)
            return predict_signature(self.loaded_savedmodel, SIGNATURE_TENSOR, self.samples.images)
        path = self.stage / spec.filename
        if spec.family == "onnx":
            from export.onnx_runtime import open_session, predict_probabilities

            images = self.samples.images
            if spec.variant == "bytes":  # the edge install's decode, not the training pipeline's
                from training.data.numpy_decode import load_images

                images = load_images(self.samples.encoded, self.run.image_size)
                _log_decode_difference(images, self.samples.uncropped)
            return predict_probabilities(open_session(path, threads=self.threads), images)
        from export.tflite_export import run_litert

        return run_litert(path.read_bytes(), self.samples.images, threads=self.threads)


def _log_decode_difference(decoded: np.ndarray, pipeline: np.ndarray) -> None:
    difference = np.abs(decoded - pipeline)
    level = logging.INFO if not difference.any() else logging.WARNING
    log.log(level, "onnx-bytes: TensorFlow-free decode vs the training pipeline on %d files: max |Δ pixel| %g, "
            "%d of %d values differ", len(decoded), float(difference.max(initial=0.0)),
            int(np.count_nonzero(difference)), difference.size)


def _format_name(family: str, variant: str) -> str:
    return next(f.name for f in FORMATS.values() if f.family == family and f.variant == variant)


def _write_records(stage: Path, run: TrainedRun, config: ExportConfig, version: int, verdict: Verdict,
                   outcomes: dict[str, FormatOutcome], destination: Path, seconds: float) -> dict:
    """labels.txt, parity.json, the BLESSED/NOT_BLESSED marker and, last, the manifest listing them all."""
    write_text(stage / LABELS_FILE, "\n".join(run.class_names) + "\n")
    write_json(stage / PARITY_FILE, verdict.as_dict())
    marker = BLESSED if verdict.blessed else NOT_BLESSED
    write_text(stage / marker, (f"every format passed the parity gate on {verdict.images} {verdict.split} images\n"
                                if verdict.blessed else "".join(f"{reason}\n" for reason in verdict.reasons))
               + "".join(f"warning: {warning}\n" for warning in verdict.warnings))
    entries = {entry["path"]: entry for entry in file_entries(stage)}
    artifacts = {}
    for name, outcome in outcomes.items():
        spec = FORMATS[name]
        files = [entry for path, entry in entries.items()
                 if any(path == part or path.startswith(part + "/") for part in outcome.files)]
        artifacts[name] = {"family": spec.family, "precision": spec.precision, "summary": spec.summary,
                           "status": "failed" if outcome.error else "ok", "error": outcome.error,
                           "files": files, "bytes": sum(f["bytes"] for f in files),
                           "convert_seconds": round(outcome.convert_seconds, 3),
                           "parity_seconds": round(outcome.parity_seconds, 3), **outcome.details}
    from training.backbones.table import get_backbone

    test_metrics = run.metrics.get("test") or {}
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model_name": config.name,
        "version": version,
        "created": utc_now(),
        "status": marker,
        "served": destination.name.isdigit(),
        "source_run": {"path": str(run.path.resolve()), "backbone": run.backbone,
                       "strategy": run.config.get("strategy"), "image_size": run.image_size,
                       "test_accuracy": test_metrics.get("accuracy"), "test_images": test_metrics.get("count")},
        "input": {**INPUT_SPEC, "shape": [None, run.image_size, run.image_size, 3]},
        "signatures": SIGNATURES,
        "preprocessing": {"in_model": True, **get_backbone(run.backbone).preprocessing.as_dict()},
        "labels": list(run.class_names),
        "artifacts": artifacts,
        "files": list(entries.values()),
        "parity": verdict.as_dict(),
        "export_config": config.to_dict(),
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count()},
        "seconds": round(seconds, 1),
    }
    write_json(stage / MANIFEST_FILE, manifest)
    return manifest


def _log_parity(result: FormatParity, outcome: FormatOutcome) -> None:
    log.info("%-20s converted in %6.1f s; max |dp| %.2e, top-1 agreement %.4f, accuracy %.4f (%+.2f points) on %d "
             "images%s", result.format, outcome.convert_seconds, result.max_abs_diff, result.top1_agreement,
             result.accuracy, 100.0 * (result.accuracy - result.reference_accuracy), result.images,
             "" if result.passed else "  FAILED: " + "; ".join(result.failures))


def _progress(total: int, enabled: bool | None):
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, desc="export", unit="step", disable=not enabled, leave=False)
