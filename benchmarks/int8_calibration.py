"""Post-training int8 recipes side by side: agreement, accuracy and batch-1 latency against fp32.

Usage: ``python -m benchmarks.int8_calibration RUN_DIR EXPORT_VERSION_DIR [--images 1000]``
where EXPORT_VERSION_DIR holds the fp32 ``model.onnx`` and ``model.tflite``
written by ``ftx export`` from RUN_DIR. This is how the int8 defaults of
``ftx export`` (calibration method, ``--int8-float-convs``) were chosen; the
table it prints is in benchmarks/RESULTS.md. Latency is the median of
``--repeats`` single-image calls after warm-up, run one recipe after another
in this process: a guide to the speed cost of a recipe, not the benchmark
(``ftx bench`` is).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx


def median_ms(call: Callable[[np.ndarray], object], images: np.ndarray, repeats: int) -> float:
    for image in images[:10]:
        call(image[None])
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        call(images[index % len(images)][None])
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("export_dir")
    parser.add_argument("--images", type=int, default=1000, help="seeded test images to compare on")
    parser.add_argument("--calibration-images", type=int, default=500, help="training images to calibrate on")
    parser.add_argument("--float-convs", type=int, nargs="+", default=[0, 2, 3], help="values of int8_float_convs")
    parser.add_argument("--repeats", type=int, default=200, help="timed single-image calls per recipe")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from ai_edge_litert.interpreter import Interpreter

    from export import tflite_export
    from export.onnx_runtime import open_session, predict_probabilities
    from export.onnx_variants import to_int8_static
    from export.run_dir import read_run
    from export.samples import load_samples

    run = read_run(args.run_dir)
    export_dir = Path(args.export_dir)
    test = load_samples(run, args.images, seed=1)
    calibration = load_samples(run, args.calibration_images, split="train")
    fp32_session = open_session(export_dir / "model.onnx", threads=args.threads)
    reference = predict_probabilities(fp32_session, test.images)
    print(f"{len(test.labels)} seeded test images, {len(calibration.labels)} calibration images, "
          f"{args.threads} threads")
    print("| runtime | recipe | top-1 agreement | accuracy | Δ accuracy (pt) | batch-1 ms | quantize s |\n"
          "|---|---|---|---|---|---|---|")

    def row(runtime: str, recipe: str, probabilities: np.ndarray, latency: float, seconds: float | None) -> None:
        agreement = np.mean(probabilities.argmax(1) == reference.argmax(1))
        accuracy = np.mean(probabilities.argmax(1) == test.labels)
        drop = 100 * (accuracy - np.mean(reference.argmax(1) == test.labels))
        quantize = "–" if seconds is None else f"{seconds:.0f}"
        print(f"| {runtime} | {recipe} | {agreement:.4f} | {accuracy:.4f} | {drop:+.1f} | {latency:.2f} | {quantize} |",
              flush=True)

    def onnx_row(recipe: str, model: bytes, seconds: float | None) -> None:
        session = open_session(model, threads=args.threads)
        row("ONNX Runtime", recipe, predict_probabilities(session, test.images),
            median_ms(lambda x: session.run(["probabilities"], {"images": x}), test.images, args.repeats), seconds)

    def litert_row(recipe: str, model: bytes, seconds: float | None) -> None:
        interpreter = Interpreter(model_content=model, num_threads=args.threads)
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]

        def call(x: np.ndarray) -> None:
            interpreter.set_tensor(index, x)
            interpreter.invoke()

        row("LiteRT (XNNPACK)", recipe, tflite_export.run_litert(model, test.images, threads=args.threads),
            median_ms(call, test.images, args.repeats), seconds)

    fp32 = onnx.load(export_dir / "model.onnx")
    onnx_row("fp32", fp32.SerializeToString(), None)
    for method in ("minmax", "percentile"):
        for float_convs in args.float_convs:
            started = time.perf_counter()
            quantized = to_int8_static(fp32, calibration.images, calibration=method, float_convs=float_convs)
            onnx_row(f"static QDQ, {method}, {float_convs} float convs", quantized.SerializeToString(),
                     time.perf_counter() - started)
    litert_row("fp32", (export_dir / "model.tflite").read_bytes(), None)
    for float_convs in args.float_convs:
        started = time.perf_counter()
        model = tflite_export.convert(run.saved_model_path, "int8", calibration.images, float_convs=float_convs)
        litert_row(f"int8, {float_convs} float convs", model, time.perf_counter() - started)


if __name__ == "__main__":
    main()
