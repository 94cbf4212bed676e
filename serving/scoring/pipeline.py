"""The Beam pipeline of ``ftx score``: read and decode each file, RunInference in batches, write JSON lines.

A file that cannot be read or decoded goes to ``bad_files`` with the reason,
and the rest are scored: one bad file never fails the run. With no
``--runner`` the pipeline runs on Beam's in-process FnApiRunner: recent
Beam's DirectRunner first tries the Prism runner, which it downloads, and
this tool must work offline. Any other runner and its options (Flink, Spark,
Dataflow) pass through unchanged.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from serving.scoring.settings import BAD_FILES, LOCAL_RUNNER, PREDICTIONS, ScoreSettings


class DecodeFile(beam.DoFn):
    """path -> (path, float32 [S, S, 3]) as serving decodes it; a file that fails goes to ``bad_files``."""

    def __init__(self, image_size: int, max_file_bytes: int, max_image_pixels: int) -> None:
        self.image_size, self.max_file_bytes, self.max_image_pixels = image_size, max_file_bytes, max_image_pixels
        self.decoded = Metrics.counter("ftx_score", "decoded")
        self.bad = Metrics.counter("ftx_score", "bad_files")

    def process(self, path: str) -> Iterator:
        from apache_beam.io.filesystems import FileSystems

        from serving.errors import ServingError
        from serving.servable import decode_image

        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                data = handle.read(self.max_file_bytes + 1)
            if len(data) > self.max_file_bytes:
                raise ValueError(f"larger than {self.max_file_bytes} bytes (--max-file-bytes)")
            image = decode_image(data, self.image_size, self.max_image_pixels)
        except ServingError as error:
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(BAD_FILES, {"path": path, "reason": error.message})
            return
        except (OSError, ValueError) as error:
            self.bad.inc()
            yield beam.pvalue.TaggedOutput(BAD_FILES, {"path": path, "reason": f"{type(error).__name__}: {error}"})
            return
        self.decoded.inc()
        yield path, image


def prediction_row(keyed, class_names: tuple[str, ...], top_k: int) -> dict:
    """One JSON object per image: path, the top class and its score, and the top ``top_k``."""
    path, result = keyed
    scores = np.asarray(result.inference, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[:top_k]
    top = [{"class_id": int(i), "class_name": class_names[i], "score": round(float(scores[i]), 6)} for i in order]
    return {"path": path, **top[0], "top_k": top}


def build(pipeline: beam.Pipeline, paths: list[str], handler, image_size: int, class_names: tuple[str, ...],
          settings: ScoreSettings, out: str) -> None:
    """The scoring graph on ``pipeline``: outputs under ``out`` (one file each on the local runner)."""
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    local = settings.runner is None
    shards = {"num_shards": 1, "shard_name_template": ""} if local else {}
    decoded = (pipeline
               | "Paths" >> beam.Create(paths)
               | "Decode" >> beam.ParDo(DecodeFile(image_size, settings.max_file_bytes, settings.max_image_pixels))
               .with_outputs(BAD_FILES, main="images"))
    scored = Metrics.counter("ftx_score", "scored")

    def row(keyed) -> str:
        scored.inc()
        return json.dumps(prediction_row(keyed, class_names, settings.top_k))

    (decoded.images
     | "RunInference" >> RunInference(KeyedModelHandler(handler))
     | "Rows" >> beam.Map(row)
     | "WritePredictions" >> beam.io.WriteToText(f"{out}/{PREDICTIONS}", file_name_suffix=".jsonl", **shards))
    (decoded[BAD_FILES]
     | "BadRows" >> beam.Map(json.dumps)
     | "WriteBadFiles" >> beam.io.WriteToText(f"{out}/{BAD_FILES}", file_name_suffix=".jsonl", **shards))


def pipeline_options(settings: ScoreSettings):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(settings.pipeline_args)
    if settings.runner is None:
        args.append(f"--runner={LOCAL_RUNNER}")
    workers = settings.local_workers()
    if workers > 1:
        args.append(f"--direct_num_workers={workers}")  # the processes themselves: local_runner
    return PipelineOptions(args)


def local_runner(settings: ScoreSettings):
    """The in-process FnApiRunner; with a worker per core, worker processes that die with ftx score.

    Beam's own multi_processing mode starts each worker through a shell, and
    a worker outlived an ``ftx score`` killed with SIGKILL by over 30 s on a
    loaded machine. Here the shell execs ftx's PR_SET_PDEATHSIG shim
    (``training.children``), which then execs Beam's worker, so the kernel
    kills the worker with its parent.
    """
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms import environments

    from training.children import tied_to_parent

    if settings.local_workers() <= 1:
        return FnApiRunner()
    worker = [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"]
    command = "exec " + shlex.join(tied_to_parent(worker))
    return FnApiRunner(default_environment=environments.SubprocessSDKEnvironment.from_command_string(command))


def counters(result) -> dict[str, int]:
    """The pipeline's ftx_score counters, committed values (attempted where a runner commits none)."""
    from apache_beam.metrics.metric import MetricsFilter

    found: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("ftx_score"))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + int(value or 0)
    return found


def unknown_options(settings: ScoreSettings) -> list[str]:
    """The pass-through options no Beam options class declares (Beam itself would drop them with a warning)."""
    options = pipeline_options(settings)
    known = set(options.get_all_options())
    return sorted(f"--{name}" for name in options.get_all_options(retain_unknown_options=True) if name not in known)
