"""``ftx score EXPORT IMAGES... --out DIR``: score image files with Apache Beam's RunInference.

Options this command does not know are Beam's (``--runner=FlinkRunner
--flink_master=...``) and pass through unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
PASS_THROUGH = True  # unknown options are the pipeline's (training.cli hands them over as args.pipeline_args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.scoring.settings import MAX_FILE_BYTES, MAX_IMAGE_PIXELS, ScoreSettings

    defaults = ScoreSettings()
    parser.epilog = ("Options not listed here are Apache Beam's pipeline options and pass through unchanged; give "
                     "them as --option=value (e.g. --runner=FlinkRunner --flink_master=HOST:8081). Without --runner "
                     "the pipeline runs in this process, one worker per core.")
    parser.add_argument("export", help="a model base path (ftx export's OUT/NAME: its newest blessed version) or "
                                       "one version directory (OUT/NAME/<version>)")
    parser.add_argument("images", nargs="+", help="folders (searched recursively for jpg/png/gif/bmp), globs, "
                                                  "files, or CSV lists of paths (a 'path' column, else the first)")
    parser.add_argument("--out", required=True, help="output folder: predictions.jsonl, bad_files.jsonl, "
                                                     "summary.json (must not exist)")
    parser.add_argument("--version", type=int, help="with a model base path: this version (default: the newest "
                                                    "blessed one)")
    parser.add_argument("--format", dest="model_format", choices=("onnx", "savedmodel"), default="onnx",
                        help="onnx: Beam's ONNX handler (ONNX Runtime); savedmodel: its TensorFlow handler")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: ONNX Runtime's CUDA provider (onnxruntime-gpu)")
    parser.add_argument("--top-k", type=int, default=defaults.top_k, help="classes listed per image")
    parser.add_argument("--min-batch-size", type=int, default=defaults.min_batch_size,
                        help="RunInference's smallest batch")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                        help="RunInference's largest batch")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads per Beam worker (0: "
                        "automatic: 1 with the in-process runner's worker per core, else every core)")
    parser.add_argument("--max-file-bytes", type=int, default=MAX_FILE_BYTES, help="larger files are bad files")
    parser.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
                        help="images of more pixels (width x height, from their header) are bad files")


def _export(args: argparse.Namespace):
    """(version directory, manifest, image size, class names) of the export to score."""
    from export.manifest import MANIFEST_FILE
    from export.versions import chosen_version_dir

    version_dir = chosen_version_dir(args.export, args.version, what="scoring with")
    path = version_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        image_size, labels = int(manifest["input"]["shape"][1]), tuple(str(name) for name in manifest["labels"])
    except (ValueError, KeyError, IndexError, TypeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not an ftx export manifest with an input shape and labels "
                         f"({type(error).__name__}: {error})") from None
    artifact = "savedmodel" if args.model_format == "savedmodel" else "onnx"
    if manifest.get("artifacts", {}).get(artifact, {}).get("status") != "ok":
        raise ValueError(f"{version_dir} has no {artifact} artifact that converted (ftx export --formats ...)")
    return version_dir, manifest, image_size, labels


def run(args: argparse.Namespace) -> int:
    from training.installs import has, lacking

    if not has("apache_beam"):
        print(f"ftx score: {lacking('apache_beam')}", file=sys.stderr)
        return 2
    from export.versions import VersionError
    from serving.scoring.images import ImageListError, list_images
    from serving.scoring.settings import ScoreSettings
    from training.terminal import library_chatter

    out = args.out
    if "://" not in out and Path(out).expanduser().exists():
        print(f"ftx score: {out} already exists; choose another --out", file=sys.stderr)
        return 2
    try:
        settings = ScoreSettings(model_format=args.model_format, device=args.device, top_k=args.top_k,
                                 min_batch_size=args.min_batch_size, max_batch_size=args.max_batch_size,
                                 max_file_bytes=args.max_file_bytes, max_image_pixels=args.max_image_pixels,
                                 threads=args.threads, pipeline_args=tuple(getattr(args, "pipeline_args", ()))).check()
        paths = list_images(args.images)
        export = _export(args)
    except (VersionError, ImageListError, ValueError, OSError) as error:
        print(f"ftx score: {error}", file=sys.stderr)
        return 2
    with library_chatter(log, "Beam"):
        from serving.scoring.pipeline import unknown_options

        unknown = unknown_options(settings)
    if unknown and settings.runner is None:  # in this process nothing else could read them: a typo
        print(f"ftx score: unrecognized arguments: {' '.join(unknown)} (neither ftx score's options nor Apache "
              "Beam's; see ftx score --help)", file=sys.stderr)
        return 2
    if unknown:
        log.warning("options Apache Beam does not declare, handed to the %s as they are: %s", settings.runner,
                    " ".join(unknown))
    summary = score(settings, export, paths, out)
    print(f"scored {summary['scored']} of {summary['images']} images in {summary['seconds']:.1f} s "
          f"({summary['images_per_s']:.1f} images/s) with {summary['format']} on {summary['runner']}; "
          f"{summary['bad_files']} bad file(s)")
    print(f"predictions in {summary['outputs'][0]}" + (f", bad files in {summary['outputs'][1]}"
                                                       if summary["bad_files"] else ""))
    return 0


def score(settings, export, paths: list[str], out: str) -> dict:
    """Run the pipeline into ``out`` (staged and renamed when local) and return the summary it wrote."""
    from training.atomic import staged_directory, write_json

    if "://" in out:
        return _score_into(settings, export, paths, out)
    final = Path(out).expanduser().absolute()
    with staged_directory(final) as stage:
        summary = _score_into(settings, export, paths, str(stage))
        summary["outputs"] = [str(final / Path(p).name) for p in summary["outputs"]]
        write_json(stage / "summary.json", summary)
    return summary


def _score_into(settings, export, paths: list[str], out: str) -> dict:
    from serving.scoring.settings import BAD_FILES, LOCAL_RUNNER, PREDICTIONS
    from training.terminal import library_chatter

    version_dir, manifest, image_size, class_names = export
    started = time.perf_counter()
    # Beam's notes are not the user's: apitools missing on import, a memory warning per batch without torch
    with library_chatter(log, "Beam"):
        import apache_beam as beam

        from serving.scoring.handlers import model_handler
        from serving.scoring.pipeline import build, counters, local_runner, pipeline_options

        handler = model_handler(version_dir, settings.model_format, settings.device, settings.min_batch_size,
                                settings.max_batch_size, settings.session_threads())
        runner = local_runner(settings) if settings.runner is None else None
        pipeline = beam.Pipeline(runner=runner, options=pipeline_options(settings))
        build(pipeline, paths, handler, image_size, class_names, settings, out)
        result = pipeline.run()
        result.wait_until_finish()
        counts = counters(result)
    seconds = time.perf_counter() - started
    scored = counts.get("scored", 0)
    suffix = ".jsonl" if settings.runner is None else "-*.jsonl"
    summary = {"export": str(version_dir), "model": manifest.get("model_name"), "version": manifest.get("version"),
               "format": settings.model_format, "device": settings.device,
               "runner": settings.runner or LOCAL_RUNNER, "images": len(paths), "scored": scored,
               "bad_files": counts.get("bad_files", 0), "seconds": round(seconds, 3),
               "images_per_s": round(scored / seconds, 2) if seconds > 0 else 0.0,
               "batch_size": {"min": settings.min_batch_size, "max": settings.max_batch_size},
               "workers": settings.local_workers() if settings.runner is None else None,
               "onnx_threads": settings.session_threads() if settings.model_format == "onnx" else None,
               "top_k": settings.top_k, "outputs": [f"{out}/{PREDICTIONS}{suffix}", f"{out}/{BAD_FILES}{suffix}"]}
    if "://" in out:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(f"{out}/summary.json") as handle:
            handle.write(json.dumps(summary, indent=2).encode())
    return summary
