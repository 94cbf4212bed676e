"""Every protobuf module the server uses, imported in one place.

Today these are tensorflow-serving-api's and TensorFlow's own generated
modules, so any TF Serving client's messages are wire-identical; the edge
install (no TensorFlow) swaps this one module for a private generated copy.
"""

from __future__ import annotations

from tensorflow.core.example import example_pb2, feature_pb2  # noqa: F401
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: F401
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2  # noqa: F401
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,  # noqa: F401
                                     inference_pb2, input_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import model_server_config_pb2  # noqa: F401
