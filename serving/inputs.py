"""Request inputs checked against a SignatureDef before anything they declare is allocated.

The order and wording follow TF Serving's ``predict_util.cc`` (input count)
and TensorFlow's ``saved_model::GetInputValues`` (names); dtype and shape
are checked from the declared ``tensor_shape`` and the ``max_batch`` /
``max_elements`` bounds before the tensor is built, so a 66-byte request
declaring ``[1, 8000, 8000, 3]`` costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from serving import tensors
from serving.errors import ServingError
from serving.servable import InputLimits


def check_input_names(signature, names: set[str]) -> None:
    """TF Serving's VerifyRequestInputsSize, then GetInputValues' missing and unknown names."""
    expected = set(signature.inputs)
    if len(names) > len(expected) or (len(names) < len(expected) and not signature.defaults):
        raise ServingError.invalid(
            f"input size does not match signature: {len(names)}!={len(expected)} len({{{','.join(sorted(names))}}})"
            f" != len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(sorted(names - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - names))}}}.")
    for alias in sorted(expected - names):
        raise ServingError.invalid(
            f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not found in request and no "
            f"default value provided. Inputs expected to be in the request {{{','.join(sorted(names))}}}, or default "
            f"input alias set: {','.join(sorted(signature.defaults))}")
    if names - expected:
        raise ServingError.invalid(f"Inputs contains invalid name. Used request inputs: {','.join(sorted(expected))}, "
                                   f"request input: {','.join(sorted(names))}")


def check_declared(alias: str, dtype: int, shape: tuple[int, ...], info, limits: InputLimits, position: int) -> None:
    """dtype and shape as the signature declares them, batch and size within the limits."""
    if dtype != info.dtype:
        raise ServingError.invalid(f"Expects arg[{position}] to be {short_dtype_name(info.dtype)} but "
                                   f"{short_dtype_name(dtype)} is provided (input {alias!r})")
    if not info.tensor_shape.unknown_rank:
        wanted = [d.size for d in info.tensor_shape.dim]
        if len(shape) != len(wanted) or any(w >= 0 and w != s for w, s in zip(wanted, shape)):
            raise ServingError.invalid(f"input {alias!r} must have shape {_shape_text(wanted)}, got {list(shape)}")
    if shape and shape[0] > limits.max_batch:
        raise ServingError.invalid(f"input {alias!r} has a batch of {shape[0]}, more than the maximum batch size "
                                   f"{limits.max_batch}; split the request")
    try:
        tensors.element_count(shape, limits.max_elements)
    except tensors.TensorProtoError:
        raise ServingError.invalid(f"input {alias!r} of shape {list(shape)} has more than {limits.max_elements} "
                                   "values") from None


def arrays_from_protos(signature, protos: Mapping, limits: InputLimits) -> dict[str, np.ndarray]:
    """Every input of a PredictRequest as an array, each checked before it is built."""
    check_input_names(signature, set(protos))
    arrays = {}
    for position, alias in enumerate(sorted(protos)):
        proto = protos[alias]
        try:
            shape = tensors.declared_shape(proto)
        except tensors.TensorProtoError as error:
            raise ServingError.invalid(f"tensor parsing error: {alias}: {error}") from None
        check_declared(alias, proto.dtype, shape, signature.inputs[alias], limits, position)
        try:
            arrays[alias] = tensors.to_array(proto, max_elements=limits.max_elements,
                                             max_bytes=limits.max_elements * 8)
        except tensors.TensorProtoError as error:
            raise ServingError.invalid(f"tensor parsing error: {alias}: {error}") from None
    return arrays


def check_arrays(signature, arrays: Mapping[str, np.ndarray], limits: InputLimits) -> dict[str, np.ndarray]:
    """The REST path's arrays (already parsed from bounded JSON), cast to and checked against the signature."""
    check_input_names(signature, set(arrays))
    checked = {}
    for position, alias in enumerate(sorted(arrays)):
        info = signature.inputs[alias]
        array = arrays[alias]
        if info.dtype != 7 and array.dtype == object:  # DT_STRING: strings where numbers are expected
            raise ServingError.invalid(f"Expects arg[{position}] to be {short_dtype_name(info.dtype)} but string is "
                                       f"provided (input {alias!r})")
        if info.dtype != 7:
            try:
                array = array.astype(tensors.numpy_dtype(info.dtype), copy=False)
            except (tensors.TensorProtoError, ValueError, TypeError, OverflowError) as error:
                raise ServingError.invalid(f"input {alias!r} cannot be {short_dtype_name(info.dtype)}: "
                                           f"{error}") from None
        elif array.dtype != object:
            raise ServingError.invalid(f"Expects arg[{position}] to be string but {array.dtype} is provided "
                                       f"(input {alias!r}); send binary values as {{\"b64\": ...}}")
        check_declared(alias, info.dtype, array.shape, info, limits, position)
        checked[alias] = array
    return checked


def short_dtype_name(dtype: int) -> str:
    """TensorFlow's short dtype names in its runtime errors (DT_FLOAT -> float)."""
    return tensors.dtype_name(dtype).removeprefix("DT_").lower()


def _shape_text(dims: list[int]) -> str:
    return "[" + ",".join("?" if d < 0 else str(d) for d in dims) + "]"
