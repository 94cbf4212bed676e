"""Protobuf classes for TF Serving's three config files.

``ModelServerConfig`` comes from ``tensorflow-serving-api``. The pip package
does not ship ``BatchingParameters`` (servables/tensorflow/session_bundle_config.proto)
or ``MonitoringConfig`` (config/monitoring_config.proto) or ``SSLConfig``
(config/ssl_config.proto), so they are built
here from descriptors that copy those upstream files field for field (names,
numbers, types): the text format the real server parses is decided by exactly
these, so a file that parses here parses there.
"""

from __future__ import annotations

from functools import cache

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

PACKAGE = "tensorflow.serving"
_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> _F:
    field = _F(name=name, number=number, type=kind, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:  # presence matters: an empty type_name on a scalar is rejected
        field.type_name = type_name
    return field


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    int64, string = ".google.protobuf.Int64Value", ".google.protobuf.StringValue"
    batching = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/ftx_batching_parameters.proto", package=PACKAGE,
        syntax="proto3", dependency=[wrappers.name])
    batching.message_type.add(name="BatchingParameters", field=[
        _field("max_batch_size", 1, _F.TYPE_MESSAGE, int64),
        _field("batch_timeout_micros", 2, _F.TYPE_MESSAGE, int64),
        _field("max_enqueued_batches", 3, _F.TYPE_MESSAGE, int64),
        _field("num_batch_threads", 4, _F.TYPE_MESSAGE, int64),
        _field("thread_pool_name", 5, _F.TYPE_MESSAGE, string),
        _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
        _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
    ])
    pool.Add(batching)
    monitoring = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ftx_monitoring_config.proto", package=PACKAGE, syntax="proto3")
    monitoring.message_type.add(name="PrometheusConfig", field=[
        _field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)])
    monitoring.message_type.add(name="MonitoringConfig", field=[
        _field("prometheus_config", 1, _F.TYPE_MESSAGE, f".{PACKAGE}.PrometheusConfig")])
    pool.Add(monitoring)
    ssl = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ftx_ssl_config.proto", package=PACKAGE, syntax="proto3")
    ssl.message_type.add(name="SSLConfig", field=[
        _field("server_key", 1, _F.TYPE_STRING), _field("server_cert", 2, _F.TYPE_STRING),
        _field("custom_ca", 3, _F.TYPE_STRING), _field("client_verify", 4, _F.TYPE_BOOL)])
    pool.Add(ssl)
    return pool


def batching_parameters_class():
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.BatchingParameters"))


def monitoring_config_class():
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.MonitoringConfig"))


def ssl_config_class():
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.SSLConfig"))


def model_server_config_class():
    from serving.generated import model_server_config_pb2

    return model_server_config_pb2.ModelServerConfig
