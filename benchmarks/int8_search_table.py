"""The tflite-int8 search's candidates side by side: validation (what chose), test (what counts), speed.

Usage: ``python -m benchmarks.int8_search_table RUN_DIR EXPORT_VERSION_DIR [--test-images 0] [--rounds 3]``
where EXPORT_VERSION_DIR is ``ftx export``'s version of RUN_DIR with
``model.tflite`` and ``model.onnx`` (fp32), and ``model.int8.tflite`` (the
searched one, whose manifest names its float layers). Every candidate the
search could take (the k most sensitive layers float, k in ``--steps``) and
the old fixed rule (the first two convolutions float) is rebuilt from one
calibration, scored on all validation images (the search's own criterion)
and on the test split (never seen by the search), then timed at batch 1 in
interleaved rounds with the fp32 models of both runtimes, so a drift of the
machine moves every row of a round alike. Goal (issue 16 §1): full-integer
TFLite at least 1.7x the best fp32 path with at most 1.0 point lost on test.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.int8_calibration import median_ms


def litert_call(model: bytes, threads: int) -> Callable[[np.ndarray], object]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def call(x: np.ndarray) -> None:
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("export_dir")
    parser.add_argument("--test-images", type=int, default=0, help="seeded test images (0: the whole split)")
    parser.add_argument("--calibration-images", type=int, default=500)
    parser.add_argument("--steps", default="0,1,2,3,4,6,8", help="float-layer counts to rebuild")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=200, help="timed single-image calls per row and round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from export import tflite_export
    from export.onnx_runtime import open_session
    from export.run_dir import read_run
    from export.samples import load_samples
    from export.savedmodel import load_keras_model
    from export.parity_stats import PairedAccuracy
    from export.tflite_int8_search import CalibratedModel, Int8Trial
    from training.keras_predict import predict_array

    run = read_run(args.run_dir)
    export_dir = Path(args.export_dir)
    manifest = json.loads((export_dir / "export_manifest.json").read_text())
    chosen = manifest["artifacts"]["tflite-int8"].get("int8_search", {}).get("float_layers")
    valid = load_samples(run, 100_000, split="valid")
    test = load_samples(run, args.test_images or 1_000_000, seed=1)
    calibration = load_samples(run, args.calibration_images, split="train")
    valid_reference = predict_array(load_keras_model(run), valid.images).argmax(1)
    fp32_tflite = (export_dir / "model.tflite").read_bytes()
    test_reference = tflite_export.run_litert(fp32_tflite, test.images, threads=args.threads).argmax(1)
    calibrated = CalibratedModel(run.saved_model_path, calibration.images)
    ranking = calibrated.layer_errors(calibration.images[:16])
    candidates: dict[str, bytes] = {}
    for count in (int(step) for step in args.steps.split(",")):
        candidates[f"int8, {count} most sensitive float"] = calibrated.quantize([l.tensor for l in ranking[:count]])
    candidates["int8, first 2 convs float (old rule)"] = calibrated.quantize(
        tflite_export.conv_outputs(fp32_tflite)[:2])

    print(f"{len(valid.labels)} validation images (Keras accuracy "
          f"{np.mean(valid_reference == valid.labels):.4f}), {len(test.labels)} test images (fp32 LiteRT accuracy "
          f"{np.mean(test_reference == test.labels):.4f}), {args.threads} threads; searched model's float layers: "
          f"{[name.split(';')[0] for name in chosen] if chosen is not None else 'n/a'}")
    print("most sensitive layers (RMSE/scale on 16 calibration images): " + ", ".join(
        f"{layer.op} {layer.tensor.split(';')[0].rsplit('/', 2)[-2]} {layer.rmse_per_scale:.2f}"
        for layer in ranking[:8]))
    accuracy: dict[str, tuple[str, float, float]] = {}
    for name, model in candidates.items():
        valid_top1 = tflite_export.run_litert(model, valid.images, threads=args.threads).argmax(1)
        test_top1 = tflite_export.run_litert(model, test.images, threads=args.threads).argmax(1)
        trial = Int8Trial((), 0.0, 0.0, PairedAccuracy.of(valid_reference == valid.labels,
                                                           valid_top1 == valid.labels), max_drop=1.0)
        rule = "within" if trial.within_target else "chance" if trial.passed else "FAIL"
        accuracy[name] = (f"{-trial.drop_points:+.2f} (-{trial.paired.lost}/+{trial.paired.gained}, {rule})",
                          100 * (np.mean(test_top1 == test.labels) - np.mean(test_reference == test.labels)),
                          float(np.mean(test_top1 == test_reference)))
        print(f"  scored {name}: validation {accuracy[name][0]}, test {accuracy[name][1]:+.2f} points", flush=True)

    onnx_session = open_session(export_dir / "model.onnx", threads=args.threads)
    calls = {"LiteRT fp32": litert_call(fp32_tflite, args.threads),
             "ONNX Runtime fp32": lambda x: onnx_session.run(["probabilities"], {"images": x})}
    if (export_dir / "model.int8_static.onnx").is_file():
        static = open_session(export_dir / "model.int8_static.onnx", threads=args.threads)
        calls["ONNX Runtime int8 static"] = lambda x: static.run(["probabilities"], {"images": x})
    calls.update({name: litert_call(model, args.threads) for name, model in candidates.items()})
    rounds: dict[str, list[float]] = {name: [] for name in calls}
    ratios: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        timed = {name: median_ms(call, test.images[:256], args.repeats) for name, call in calls.items()}
        best_fp32 = min(timed["LiteRT fp32"], timed["ONNX Runtime fp32"])
        for name, value in timed.items():
            rounds[name].append(value)
            ratios[name].append(best_fp32 / value)
    print("\n| model | validation Δ (pt; images lost/gained; gate rule at 1 pt) | test Δ (pt) | test agreement | "
          "batch-1 p50 per round (ms) | "
          "speed-up over the round's best fp32 |\n|---|---|---|---|---|---|")
    for name in calls:
        valid_drop, test_drop, agreement = accuracy.get(name, (None, None, None))
        cells = ["–", "–", "–"] if valid_drop is None else [valid_drop, f"{test_drop:+.2f}",
                                                           f"{agreement:.4f}"]
        print(f"| {name} | {' | '.join(cells)} | {', '.join(f'{v:.2f}' for v in rounds[name])} | "
              f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}x |")


if __name__ == "__main__":
    main()
