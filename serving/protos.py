"""Every protobuf module the server uses, imported in one place: serving/generated's private copies.

They are wire-identical to tensorflow-serving-api's and TensorFlow's own
(tests/test_generated_protos.py), import without TensorFlow, and live in a
private descriptor pool, so a process that imports TensorFlow too has no
clash. Messages cross to TensorFlow's classes as bytes, never by CopyFrom.
"""

from __future__ import annotations

from serving.generated import (classification_pb2, example_pb2, feature_pb2,  # noqa: F401
                               get_model_metadata_pb2, get_model_status_pb2, inference_pb2, input_pb2,
                               meta_graph_pb2, model_management_pb2, model_pb2, model_server_config_pb2,
                               model_service_pb2_grpc, predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc,
                               regression_pb2, saved_model_pb2, tensor_pb2, tensor_shape_pb2, types_pb2)
