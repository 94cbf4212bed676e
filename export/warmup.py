"""``assets.extra/tf_serving_warmup_requests``: real requests TF Serving replays at load.

TF Serving runs these before marking a version AVAILABLE, so the first user
request does not pay for graph tracing. One record per signature and sample
image, at most 1000 records (TF Serving's limit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, model_pb2, predict_pb2, prediction_log_pb2

from export.signatures import SIGNATURE_BYTES, SIGNATURE_CLASSIFY, SIGNATURE_EXAMPLES, SIGNATURE_TENSOR, example_bytes

MAX_RECORDS = 1000
WARMUP_FILE = "tf_serving_warmup_requests"


def warmup_records(model_name: str, images: np.ndarray, encoded: Sequence[bytes]) -> list[bytes]:
    """Serialized ``PredictionLog``s for every signature, one image per request.

    ``images`` are float32/uint8 ``[N, H, W, 3]`` at the model's size and
    ``encoded`` the same images' file bytes (PNG/JPEG).
    """
    logs: list[prediction_log_pb2.PredictionLog] = []
    for image, data in zip(images, encoded, strict=True):
        tensor = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name,
                                                                           signature_name=SIGNATURE_TENSOR))
        tensor.inputs["images"].CopyFrom(tf.make_tensor_proto(np.asarray(image, np.float32)[None]))
        raw = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name,
                                                                        signature_name=SIGNATURE_BYTES))
        raw.inputs["images_bytes"].CopyFrom(tf.make_tensor_proto([data], dtype=tf.string))
        examples = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name,
                                                                             signature_name=SIGNATURE_EXAMPLES))
        examples.inputs["examples"].CopyFrom(tf.make_tensor_proto([example_bytes(data)], dtype=tf.string))
        classify = classification_pb2.ClassificationRequest(
            model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE_CLASSIFY))
        classify.input.example_list.examples.add().ParseFromString(example_bytes(data))
        for request in (tensor, raw, examples):
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
        logs.append(prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)))
    return [log.SerializeToString() for log in logs[:MAX_RECORDS]]


def write_warmup_file(path, records: Sequence[bytes]) -> None:
    """A TFRecord file of the records (written inside the not-yet-published version directory)."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
