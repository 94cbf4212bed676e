"""A version's SignatureDefs, verbatim, for GetModelMetadata and request checking on either backend.

TF Serving answers GetModelMetadata with the SavedModel's ``signature_def``
map as saved (``__saved_model_init_op`` included). ``ftx export`` writes that
map beside the model as ``signature_defs.pb`` (a serialized
``tensorflow.serving.SignatureDefMap``) so an ONNX-only version directory
answers the same; without it the map is read from ``saved_model.pb``.
"""

from __future__ import annotations

from pathlib import Path

from serving.errors import ServingError
from serving.protos import get_model_metadata_pb2, saved_model_pb2

SIGNATURE_DEFS_FILE = "signature_defs.pb"
SAVED_MODEL_FILE = "saved_model.pb"
SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
MAX_SIGNATURE_FILE_BYTES = 1 << 30  # protobuf's own 2 GB limit is far beyond any real graph


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_SIGNATURE_FILE_BYTES:
        raise ServingError.invalid(f"{path} is {size} bytes, more than {MAX_SIGNATURE_FILE_BYTES}")
    return path.read_bytes()


def read_signature_defs(version_dir: Path):
    """The ``SignatureDefMap`` of a version directory (``signature_defs.pb``, else ``saved_model.pb``)."""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    own = version_dir / SIGNATURE_DEFS_FILE
    if own.is_file():
        try:
            signature_map.ParseFromString(_read(own))
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends: a damaged file
            raise ServingError.invalid(f"{own} is not a serialized SignatureDefMap: {error}") from None
        return signature_map
    saved = version_dir / SAVED_MODEL_FILE
    if not saved.is_file():
        raise ServingError.invalid(f"{version_dir} has neither {SIGNATURE_DEFS_FILE} nor {SAVED_MODEL_FILE}: "
                                   "no SignatureDefs to serve")
    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(_read(saved))
    except Exception as error:  # noqa: BLE001
        raise ServingError.invalid(f"{saved} is not a readable SavedModel: {error}") from None
    for meta_graph in model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            for name, signature in meta_graph.signature_def.items():
                signature_map.signature_def[name].CopyFrom(signature)
            return signature_map
    raise ServingError.invalid(f"{saved} has no MetaGraph tagged {SERVE_TAG!r}")
