"""The versioned SavedModel TF Serving loads: signatures, labels, warmup requests."""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from export.run_dir import TrainedRun
from export.samples import Samples
from export.signatures import SIGNATURE_CLASSIFY, ClassifierServing
from export.versions import check_model_name, choose_version
from export.warmup import WARMUP_FILE, warmup_records, write_warmup_file
from training.atomic import staged_directory

log = logging.getLogger(__name__)

CLASSIFY_METHOD = "tensorflow/serving/classify"
WARMUP_IMAGES = 16


def load_keras_model(run: TrainedRun):
    """The run's Keras model (its custom preprocessing layer registers on import)."""
    import keras

    import training.backbones.preprocessing  # noqa: F401 - registers ImagePreprocessing

    return keras.models.load_model(run.keras_path)


def _mark_classify_signature(export_dir: Path) -> None:
    """TF 2 saves every signature as a Predict one; TF Serving's Classify RPC wants the classify method.

    The SignatureDef's method name is rewritten in ``saved_model.pb`` and the
    fingerprint regenerated to match the edited file.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = export_dir / "saved_model.pb"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString(path.read_bytes())
    for meta_graph in saved.meta_graphs:
        meta_graph.signature_def[SIGNATURE_CLASSIFY].method_name = CLASSIFY_METHOD
    path.write_bytes(saved.SerializeToString())
    fingerprint = export_dir / "fingerprint.pb"
    try:
        from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting

        fingerprint.write_bytes(fingerprinting.CreateFingerprintDef(str(export_dir)))
    except (ImportError, AttributeError):  # older TF: a stale fingerprint is worse than none
        fingerprint.unlink(missing_ok=True)


def write_serving_savedmodel(run: TrainedRun, export_root: Path, model_name: str, samples: Samples,
                             version: int | None = None) -> Path:
    """Write ``export_root/model_name/<version>/`` and return it; never overwrites a version."""
    model_dir = Path(export_root) / check_model_name(model_name)
    chosen = choose_version(model_dir, version)
    final = model_dir / str(chosen)
    with staged_directory(final) as stage:
        module = ClassifierServing(load_keras_model(run), run.class_names, run.image_size)
        tf.saved_model.save(module, str(stage), signatures=module.signatures())
        _mark_classify_signature(stage)
        extra = stage / "assets.extra"
        extra.mkdir()
        count = min(WARMUP_IMAGES, len(samples.images))
        write_warmup_file(extra / WARMUP_FILE,
                          warmup_records(model_name, samples.images[:count], samples.encoded[:count]))
    log.info("SavedModel version %d written to %s", chosen, final)
    return final
