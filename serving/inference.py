"""Predict, Classify, Regress and MultiInference on a servable, with TF Serving's checks and wording.

Both APIs end here: gRPC hands in the request messages, REST the arrays or
Input message it parsed from JSON. The references are
``servables/tensorflow/{predict_util,classifier,regressor,multi_inference,util}.cc``:
an empty signature name means ``serving_default``; a missing signature is
FAILED_PRECONDITION for Predict and INVALID_ARGUMENT for the others; Classify
and Regress accept any signature with their structure (TF Serving's
method-name check is off by default), so Predict on ``classify`` works too.
"""

from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from serving import tensors
from serving.errors import ServingError
from serving.inputs import arrays_from_protos, check_arrays
from serving.servable import Servable
from serving.signature_defs import CLASSIFY_METHOD, REGRESS_METHOD

DEFAULT_SIGNATURE = "serving_default"


def _model_spec(target, name: str, signature: str | None, version: int) -> None:
    """TF Serving's MakeModelSpec: name, signature (empty -> serving_default) when given, version."""
    target.Clear()
    target.name = name
    if signature is not None:
        target.signature_name = signature or DEFAULT_SIGNATURE
    target.version.value = version


def predict_signature(servable: Servable, name: str):
    signature = servable.signature_defs.get(name or DEFAULT_SIGNATURE)
    if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f'Serving signature key "{name or DEFAULT_SIGNATURE}" not found.')
    return signature


def select_outputs(signature, outputs: dict[str, np.ndarray], output_filter) -> dict[str, np.ndarray]:
    wanted = list(output_filter)
    seen: set[str] = set()
    for alias in wanted:
        if alias not in signature.outputs:
            raise ServingError.invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                                       f"in the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise ServingError.invalid(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return {alias: outputs[alias] for alias in (wanted or sorted(signature.outputs))}


def predict_arrays(servable: Servable, signature_name: str, arrays: dict[str, np.ndarray],
                   output_filter=()) -> dict[str, np.ndarray]:
    """REST's Predict: arrays parsed from JSON, checked against the signature like gRPC's tensors."""
    signature = predict_signature(servable, signature_name)
    checked = check_arrays(signature, arrays, servable.limits)
    return select_outputs(signature, servable.run(signature_name or DEFAULT_SIGNATURE, checked), output_filter)


def predict(servable: Servable, request, response, as_content: bool = False) -> None:
    """gRPC Predict: ``response`` (a PredictResponse) gets model_spec and the outputs in typed fields."""
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = predict_signature(servable, name)
    _model_spec(response.model_spec, request.model_spec.name, name, servable.version)
    arrays = arrays_from_protos(signature, request.inputs, servable.limits)
    outputs = select_outputs(signature, servable.run(name, arrays), request.output_filter)
    for alias, array in outputs.items():
        tensors.fill_proto(response.outputs[alias], array, as_content=as_content)


def _signature_for(servable: Servable, name: str, method: str):
    """Classify/Regress signature lookup and TF Serving's structural checks (classifier.cc, regressor.cc)."""
    signature = servable.signature_defs.get(name or DEFAULT_SIGNATURE)
    if signature is None:
        raise ServingError.invalid(f"No signature was found with the name: {name or DEFAULT_SIGNATURE}")
    def dump() -> str:  # only for a refusal: Classify is a hot path
        return text_format.MessageToString(signature)

    if len(signature.inputs) != 1:
        raise ServingError.invalid("Expected one input Tensor.")
    if method == CLASSIFY_METHOD:
        if len(signature.outputs) not in (1, 2):
            raise ServingError.invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "inputs" not in signature.inputs:
            raise ServingError.invalid(f"No classification inputs found in SignatureDef: {dump()}")
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            raise ServingError.invalid('Expected classification signature outputs to contain at least one of '
                                       f'"classes" or "scores". Signature was: {dump()}')
    else:
        if len(signature.outputs) != 1:
            raise ServingError.invalid("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise ServingError.invalid(f"No regression inputs found in SignatureDef: {dump()}")
        if "outputs" not in signature.outputs:
            raise ServingError.invalid(f"No regression outputs found in SignatureDef: {dump()}")
    return signature


def serialized_examples(input_message) -> np.ndarray:
    """TF Serving's InputToSerializedExampleTensor: one string per example, the context's bytes first."""
    kind = input_message.WhichOneof("kind")
    if kind == "example_list":
        items = [e.SerializeToString() for e in input_message.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_message.example_list_with_context.context.SerializeToString()
        items = [context + e.SerializeToString() for e in input_message.example_list_with_context.examples]
    elif kind is None:
        items = []
    else:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Input with kind {kind} not supported.")
    if not items:
        raise ServingError.invalid("Input is empty.")
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def _run_examples(servable: Servable, name: str, examples: np.ndarray) -> dict[str, np.ndarray]:
    if len(examples) > servable.limits.max_batch:
        raise ServingError.invalid(f"{len(examples)} examples are more than the maximum batch size "
                                   f"{servable.limits.max_batch}; split the request")
    try:
        return servable.run(name or DEFAULT_SIGNATURE, {"inputs": examples})
    except DecodeError:
        raise ServingError(grpc.StatusCode.INTERNAL, "Error parsing serialized input.") from None


def classification_result(outputs: dict[str, np.ndarray], signature, result, batch: int) -> None:
    """PostProcessClassificationResult: classes (string [N, C]) and/or scores (float [N, C]) per example."""
    classes = outputs.get("classes") if "classes" in signature.outputs else None
    scores = outputs.get("scores") if "scores" in signature.outputs else None
    for name, value in (("classes", classes), ("scores", scores)):
        if value is not None and (value.ndim != 2 or value.shape[0] != batch):
            raise ServingError.invalid(f"Expected {name} output batch size of {batch}. Got: {value.shape[0]}")
    width = (classes if classes is not None else scores).shape[1]
    for row in range(batch):
        classification = result.classifications.add()
        for column in range(width):
            item = classification.classes.add()
            if classes is not None:
                item.label = bytes(classes[row, column]).decode("utf-8", "replace")
            if scores is not None:
                item.score = float(scores[row, column])


def regression_result(outputs: dict[str, np.ndarray], result, batch: int) -> None:
    """PostProcessRegressionResult: one value per example from ``outputs`` ([N] or [N, 1])."""
    for value in np.asarray(outputs["outputs"]).reshape(batch, -1)[:, 0]:
        result.regressions.add(value=float(value))


def classify(servable: Servable, request, response) -> None:
    signature = _signature_for(servable, request.model_spec.signature_name, CLASSIFY_METHOD)
    examples = serialized_examples(request.input)
    _model_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name, servable.version)
    outputs = _run_examples(servable, request.model_spec.signature_name, examples)
    classification_result(outputs, signature, response.result, len(examples))


def regress(servable: Servable, request, response) -> None:
    """ftx exports have no regression signature, so this ends in TF Serving's structural error;
    a signature with the regress structure would be run and its ``outputs`` returned."""
    _signature_for(servable, request.model_spec.signature_name, REGRESS_METHOD)
    examples = serialized_examples(request.input)
    _model_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name, servable.version)
    regression_result(_run_examples(servable, request.model_spec.signature_name, examples), response.result,
                      len(examples))


def multi_inference(servable: Servable, request, response) -> None:
    """MultiInference: classify/regress tasks on one model and one set of examples (multi_inference.cc)."""
    first = request.tasks[0].model_spec.name if request.tasks else ""
    seen: set[str] = set()
    checked = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise ServingError.invalid("Found ModelSpec with an empty model name.")
        if task.model_spec.name != first:
            raise ServingError.invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise ServingError.invalid(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        if name not in servable.signature_defs:
            raise ServingError.invalid(f"Requested signature not found in model graph: {name}")
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        checked.append((task, name, _signature_for(servable, name, task.method_name)))
    examples = serialized_examples(request.input)
    for task, name, signature in checked:
        outputs = _run_examples(servable, name, examples)
        result = response.results.add()
        _model_spec(result.model_spec, task.model_spec.name, task.model_spec.signature_name, servable.version)
        if task.method_name == CLASSIFY_METHOD:
            classification_result(outputs, signature, result.classification_result, len(examples))
        else:
            regression_result(outputs, result.regression_result, len(examples))
