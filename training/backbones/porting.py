"""Copy torch tensors into Keras layers, converting layouts on the way.

Torch layouts: conv ``(out, in, kh, kw)`` -> Keras ``(kh, kw, in, out)``;
depthwise ``(C, 1, kh, kw)`` -> ``(kh, kw, C, 1)``; dense ``(out, in)`` ->
``(in, out)``; BatchNorm ``weight, bias, running_mean, running_var`` ->
``gamma, beta, moving_mean, moving_variance``.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np


class WeightPortError(ValueError):
    """A state dict does not fit the Keras topology."""


def _layer_arrays(layer: keras.layers.Layer, state: dict[str, np.ndarray], key: str) -> list[np.ndarray] | None:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [state[f"{key}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, keras.layers.Conv2D):
        arrays = [state[f"{key}.weight"].transpose(2, 3, 1, 0)]
        if layer.use_bias:
            arrays.append(state[f"{key}.bias"])
        return arrays
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{key}.{part}"] for part in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [state[f"{key}.weight"].T, state[f"{key}.bias"]]
    return None


def assign_by_name(model: keras.Model, state: dict[str, np.ndarray], torch_key: Callable[[str], str]) -> int:
    """Set every weighted layer of ``model`` from ``state[torch_key(layer.name) + ...]``.

    Every torch tensor must be used exactly once (running-stat counters aside),
    so a topology mismatch fails loudly instead of leaving random weights.
    """
    used: set[str] = set()
    assigned = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        key = torch_key(layer.name)
        try:
            arrays = _layer_arrays(layer, state, key)
        except KeyError as missing:
            raise WeightPortError(f"layer {layer.name!r}: no tensor {missing} in the checkpoint") from None
        if arrays is None:
            raise WeightPortError(f"layer {layer.name!r} ({type(layer).__name__}) has no porting rule")
        expected = [tuple(w.shape) for w in layer.weights]
        got = [a.shape for a in arrays]
        if expected != got:
            raise WeightPortError(f"layer {layer.name!r}: expected shapes {expected}, checkpoint has {got}")
        layer.set_weights([a.astype(np.float32) for a in arrays])
        used.update(k for k in state if k.startswith(key + ".") and k.count(".") == key.count(".") + 1)
        assigned += 1
    leftover = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    leftover = [k for k in leftover if not k.startswith(("classifier.", "_fc."))]
    if leftover:
        raise WeightPortError(f"{len(leftover)} checkpoint tensors match no layer, e.g. {leftover[:5]}")
    return assigned
