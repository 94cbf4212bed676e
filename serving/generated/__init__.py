"""TF Serving's protobuf messages and gRPC services, without TensorFlow.

Everything here but ``regenerate.py`` is written by
``python -m serving.generated.regenerate`` (run it in the full install after
upgrading tensorflow-serving-api or TensorFlow; tests/test_generated_protos.py
fails while the files are stale). Never edit them by hand.

Modules are named as upstream's, so swapping the import is the whole change::

    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from serving.generated import predict_pb2, prediction_service_pb2_grpc

They need only protobuf (and grpcio for the ``*_pb2_grpc`` modules). The
messages live in a private descriptor pool: the bytes on the wire and ``Any``
type URLs are upstream's, but the classes are not, so converting between the
two goes through ``SerializeToString`` / ``FromString``, never ``CopyFrom``.
For the same reason only top-level messages pickle: protobuf looks nested
ones up in the default pool.
"""
