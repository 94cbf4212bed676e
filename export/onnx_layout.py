"""Move the in-graph preprocessing behind tf2onnx's input transpose, where ONNX Runtime runs it 10x faster.

tf2onnx keeps the Keras graph's order: ``images`` (NHWC) -> Mul and Add by
per-channel constants of shape [3] -> Transpose to NCHW -> the first Conv.
ONNX Runtime's CPU kernels broadcast a [3] constant over a [N, H, W, 3]
tensor element by element; over NCHW planes ([1, 3, 1, 1]) they stream.
Measured on the 2-core AMD EPYC VM, 2 threads, one 224x224x3 image: Mul, Add
and Transpose 0.945 ms in that order, 0.086 ms as Transpose, Mul, Add
(about a sixth of MobileNetV2's batch-1 latency). Each element still sees the
same operations in the same order, so the outputs are bit-identical.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ELEMENTWISE = ("Mul", "Add", "Sub", "Div")
TO_NCHW = [0, 3, 1, 2]


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [node for node in graph.node if name in node.input]


def _channel_constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The initializer ``name`` if it is a scalar or holds one value per channel (shape [3] or [1,1,1,3])."""
    found = next((init for init in graph.initializer if init.name == name), None)
    if found is None:
        return None
    value = numpy_helper.to_array(found)
    return value if value.ndim == 0 or value.shape in ((3,), (1, 1, 1, 3)) else None


def preprocessing_after_transpose(graph: onnx.GraphProto, input_name: str) -> bool:
    """Rewrite ``input -> elementwise ops on per-channel constants -> Transpose(NCHW)`` as
    ``input -> Transpose -> the same ops on [1, 3, 1, 1] constants``; False (graph untouched) when the graph
    does not start that way."""
    chain: list[tuple[onnx.NodeProto, int, np.ndarray]] = []  # (node, position of the running value, constant)
    current = input_name
    while True:
        users = _consumers(graph, current)
        if len(users) != 1 or any(o.name == current for o in graph.output):
            return False
        node = users[0]
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm != TO_NCHW or not chain:
                return False
            break
        if node.op_type not in ELEMENTWISE or len(node.input) != 2:
            return False
        position = list(node.input).index(current)
        constant = _channel_constant(graph, node.input[1 - position])
        if constant is None:
            return False
        chain.append((node, position, constant))
        current = node.output[0]
    transpose = node
    moved = transpose.input[0] + "_nchw_input"
    rebuilt = [helper.make_node("Transpose", [input_name], [moved], perm=TO_NCHW, name=transpose.name or "to_nchw")]
    running = moved
    for index, (old, position, constant) in enumerate(chain):
        name = f"{old.output[0]}_nchw_constant"
        shaped = constant if constant.ndim == 0 else constant.reshape(1, 3, 1, 1)
        graph.initializer.append(numpy_helper.from_array(shaped.astype(constant.dtype), name))
        output = transpose.output[0] if index == len(chain) - 1 else f"{old.output[0]}_nchw"
        inputs = [running, name] if position == 0 else [name, running]
        rebuilt.append(helper.make_node(old.op_type, inputs, [output], name=f"{old.name or old.op_type}_nchw"))
        running = output
    removed = {id(node) for node, _, _ in chain} | {id(transpose)}
    kept = [node for node in graph.node if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(rebuilt + kept)
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return True
