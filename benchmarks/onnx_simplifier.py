"""onnxslim on ftx's fp32 ONNX model: nodes before and after, outputs, batch-1 and batch-8 latency alternated.

Usage: ``pip install onnxslim && python -m benchmarks.onnx_simplifier EXPORT_VERSION_DIR/model.onnx``.
onnxslim is not a dependency of ftx: this measured that it changes nothing
that runs (ONNX Runtime's optimizer makes the same fusions at load); the
result is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    try:
        import onnxslim
    except ImportError:
        raise SystemExit("onnxslim is not installed: pip install onnxslim") from None
    import onnx

    from export.onnx_runtime import open_session

    original = onnx.load(args.model)
    started = time.perf_counter()
    slimmed = onnxslim.slim(onnx.load(args.model))
    print(f"onnxslim {onnxslim.__version__}: {time.perf_counter() - started:.1f} s, nodes "
          f"{len(original.graph.node)} -> {len(slimmed.graph.node)}")
    for name, model in (("before", original), ("after", slimmed)):
        print(f"ops {name}: {Counter(node.op_type for node in model.graph.node).most_common(8)}")
    sessions = [open_session(m.SerializeToString(), threads=args.threads) for m in (original, slimmed)]
    size = original.graph.input[0].type.tensor_type.shape.dim[1].dim_value or 224
    images = np.random.default_rng(0).uniform(0, 255, (8, size, size, 3)).astype(np.float32)
    outputs = [s.run(["probabilities"], {"images": images})[0] for s in sessions]
    print(f"max |dp| {float(np.abs(outputs[0] - outputs[1]).max()):.3g}")

    def median_ms(session, batch: int, calls: int) -> float:
        x = images[:batch]
        for _ in range(10):
            session.run(["probabilities"], {"images": x})
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            session.run(["probabilities"], {"images": x})
            times.append(time.perf_counter() - started)
        return float(np.median(times) * 1e3)

    for index in range(args.rounds):
        b1 = [median_ms(s, 1, 200) for s in sessions]
        b8 = [median_ms(s, 8, 40) for s in sessions]
        print(f"round {index}: batch 1 {b1[0]:.2f} / {b1[1]:.2f} ms, batch 8 {b8[0]:.1f} / {b8[1]:.1f} ms "
              "(original / slimmed)", flush=True)


if __name__ == "__main__":
    main()
