"""Post-training int8 recipes side by side: top-1 agreement with fp32 and accuracy on real test images.

Usage: ``python -m benchmarks.int8_calibration RUN_DIR EXPORT_VERSION_DIR [--images 1000]``
where EXPORT_VERSION_DIR holds the fp32 ``model.onnx`` written by ``ftx export``.
This is how the ONNX static-int8 defaults of ``ftx export`` were chosen; the
table it prints is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("export_dir")
    parser.add_argument("--images", type=int, default=1000, help="seeded test images to compare on")
    parser.add_argument("--calibration", type=int, nargs="+", default=[128, 280], help="calibration set sizes")
    args = parser.parse_args()

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from export import tflite_export
    from export.onnx_runtime import open_session, predict_probabilities
    from export.onnx_variants import to_int8_static
    from export.run_dir import read_run
    from export.samples import load_samples

    run = read_run(args.run_dir)
    source = Path(args.export_dir) / "model.onnx"
    test = load_samples(run, args.images, seed=1)
    reference = predict_probabilities(open_session(source), test.images)
    print(f"fp32: accuracy {np.mean(reference.argmax(1) == test.labels):.4f} on {len(test.labels)} test images, "
          f"mean top-1 probability {reference.max(1).mean():.3f}")
    print("| recipe | calibration images | top-1 agreement | accuracy | quantize s |\n|---|---|---|---|---|")

    def row(name: str, count: int, probabilities: np.ndarray, seconds: float) -> None:
        agreement = np.mean(probabilities.argmax(1) == reference.argmax(1))
        accuracy = np.mean(probabilities.argmax(1) == test.labels)
        print(f"| {name} | {count} | {agreement:.4f} | {accuracy:.4f} | {seconds:.0f} |", flush=True)

    fp32 = onnx.load(source)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, target = Path(tmp) / "prepared.onnx", Path(tmp) / "q.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        convs = [node.name for node in onnx.load(prepared).graph.node if node.op_type == "Conv"]
        for count in args.calibration:
            calibration = load_samples(run, count, split="train")

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.feed = iter([{"images": image[None]} for image in calibration.images])

                def get_next(self):
                    return next(self.feed, None)

            for label, model_path, options in (
                    ("QDQ int8 activations, minmax, no pre-processing", source, {"activation_type": QuantType.QInt8}),
                    ("minmax, first three convolutions in float", prepared,
                     {"activation_type": QuantType.QUInt8, "nodes_to_exclude": convs[:3]})):
                started = time.perf_counter()
                quantize_static(str(model_path), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, **options)
                row(label, count, predict_probabilities(open_session(target), test.images),
                    time.perf_counter() - started)
            for method in ("minmax", "entropy", "percentile"):
                started = time.perf_counter()
                quantized = to_int8_static(fp32, calibration.images, calibration=method)
                row(f"ftx recipe (pre-processing, uint8 activations), {method}", count,
                    predict_probabilities(open_session(quantized.SerializeToString()), test.images),
                    time.perf_counter() - started)
            started = time.perf_counter()
            model = tflite_export.convert(run.saved_model_path, "int8", calibration.images)
            row("TFLite full integer (converter default)", count, tflite_export.run_litert(model, test.images),
                time.perf_counter() - started)


if __name__ == "__main__":
    main()
