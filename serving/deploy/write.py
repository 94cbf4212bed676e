"""The three deployment folders for one export root: ``kubernetes/``, ``kserve/``, ``triton/`` under ``--out``.

Each part is written when it can be made from blessed versions only, and
whatever is left out is named in one line saying why (a model with no blessed
version, a policy that would serve an unblessed one, no model.onnx), so the
rest still comes out. A folder left out loses the files ftx wrote there
earlier: a stale manifest must not deploy what this run refused. Bad input
(an ``--out`` that would write over a model, names that clash in Kubernetes)
is refused before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from export.versions import VersionError, check_model_name, existing_versions
from serving.deploy.kserve import kserve_objects
from serving.deploy.kubernetes import tf_serving_objects
from serving.deploy.settings import DeploySettings, dns_label
from serving.deploy.triton import TritonBatching, write_model
from serving.deploy.versions import check_newest, check_policy, newest_blessed, without_blessed
from serving.deploy.yaml_files import remove_stale, write_objects
from serving.tfs_config import PROMETHEUS_PATH, BatchingSettings, ModelEntry, ServingConfigError, VersionPolicy

KUBERNETES_DIR, KSERVE_DIR, TRITON_DIR = "kubernetes", "kserve", "triton"


@dataclass
class Deployment:
    """What was written (folder -> files) and one line for each part or model left out."""

    written: dict[str, list[Path]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_layout(export_root: Path, names: list[str], out: Path) -> None:
    """Refuse an ``--out`` whose deployment folders would land on a model's base path, and clashing names."""
    for name in names:
        try:
            check_model_name(name)  # a Triton model directory, a file name and an InferenceService come from it
        except VersionError as error:
            raise ServingConfigError(str(error)) from None
    labels = [dns_label(name) for name in names]
    clashes = sorted({name for name, label in zip(names, labels) if labels.count(label) > 1})
    if clashes:
        raise ServingConfigError(f"models {clashes} get the same Kubernetes name; rename one of them")
    for folder in (KUBERNETES_DIR, KSERVE_DIR, TRITON_DIR):
        target = out / folder
        if existing_versions(target) or (folder in names and out.resolve() == export_root.resolve()):
            raise ServingConfigError(f"{target} is model {folder!r}'s base path; write the deployment folders "
                                     "elsewhere with --out")


def _triton(export_root: Path, names: list[str], repository: Path, batching: TritonBatching, device: str,
            result: Deployment) -> list[str]:
    """Repository entries for the newest blessed version of each of ``names``; returns those written."""
    written = []
    for name in names:
        version = newest_blessed(export_root / name)
        version_dir = export_root / name / str(version)
        if not (version_dir / "model.onnx").is_file():
            result.notes.append(f"{TRITON_DIR}/: {name}: version {version} has no model.onnx (export it with "
                                "--formats onnx)")
            continue
        try:
            config = write_model(repository, name, version_dir, version, batching, device)
        except ServingConfigError as error:
            result.notes.append(f"{TRITON_DIR}/: {name}: {error}")
            continue
        result.written.setdefault(TRITON_DIR, []).extend(
            [config, config.parent / "labels.txt", config.parent / str(version) / "model.onnx"])
        written.append(name)
    return written


def _kubernetes(export_root: Path, names: list[str], refused: list[str], out: Path, policy: VersionPolicy,
                labels: dict[str, int], settings: DeploySettings, batching: BatchingSettings, prometheus_path: str,
                result: Deployment) -> None:
    """One TF Serving Deployment for every ``--name``, or none: its models.config must match the local one."""
    entries = [ModelEntry(name, settings.base_path(name), policy, labels) for name in names]
    problems = [str(refusal) for entry in entries if entry.name not in refused
                and (refusal := check_policy(entry, export_root / entry.name))]
    if refused and len(refused) < len(names):
        problems.append(f"its models.config serves every --name, and {', '.join(refused)} cannot be deployed")
    objects = {} if problems or len(refused) == len(names) else tf_serving_objects(entries, settings, batching,
                                                                                   prometheus_path)
    _write_folder(out / KUBERNETES_DIR, objects, "; ".join(problems), result)


def _kserve(export_root: Path, names: list[str], triton_names: list[str], out: Path, policy: VersionPolicy,
            labels: dict[str, int], settings: DeploySettings, result: Deployment) -> None:
    tensorflow_names = []
    for name in names:
        refusal = check_newest(name, export_root / name)
        if refusal is not None:
            result.notes.append(f"{KSERVE_DIR}/: no TF Serving InferenceService for {refusal}")
            continue
        tensorflow_names.append(name)
        if dns_label(name) != name:
            result.notes.append(f"{KSERVE_DIR}/: KServe names a model after its InferenceService: {name} is served "
                                f"as {dns_label(name)} there")
    if tensorflow_names and (labels or policy != VersionPolicy("latest")):
        result.notes.append(f"{KSERVE_DIR}/: KServe's TF Serving runtime serves the newest version only; the version "
                            f"policy and labels apply to {KUBERNETES_DIR}/ alone")
    triton_path = None
    if triton_names:
        repository = (out / TRITON_DIR).resolve()
        try:  # the storage root holds EXPORT_ROOT's contents: the repository sits where it sits under EXPORT_ROOT
            triton_path = repository.relative_to(export_root.resolve()).as_posix()
        except ValueError:
            triton_path = TRITON_DIR
            result.notes.append(f"{KSERVE_DIR}/: --out is outside EXPORT_ROOT: copy {repository} to "
                                f"{settings.storage_root}/{TRITON_DIR} for the Triton InferenceService")
    _write_folder(out / KSERVE_DIR, kserve_objects(tensorflow_names, triton_path, settings), "", result)


def write_deployment(export_root: Path, names: list[str], out: Path, policy: VersionPolicy, labels: dict[str, int],
                     settings: DeploySettings, prometheus_path: str = PROMETHEUS_PATH) -> Deployment:
    """Write what can be written of the three folders; ``settings`` must be checked already."""
    check_layout(export_root, names, out)
    result = Deployment()
    refused = []
    for name in names:
        refusal = without_blessed(name, export_root / name)
        if refusal is not None:
            refused.append(name)
            result.notes.append(f"{refusal}; left out of {KUBERNETES_DIR}/, {KSERVE_DIR}/ and {TRITON_DIR}/")
    ready = [name for name in names if name not in refused]
    batching = BatchingSettings.for_device(settings.device, cores=settings.cores)
    triton_names = _triton(export_root, ready, out / TRITON_DIR,
                           TritonBatching.like(batching, settings.triton_max_batch_size), settings.device, result)
    _kubernetes(export_root, names, refused, out, policy, labels, settings, batching, prometheus_path, result)
    _kserve(export_root, ready, triton_names, out, policy, labels, settings, result)
    return result


def _write_folder(folder: Path, objects: dict[str, dict], why_not: str, result: Deployment) -> None:
    """Write ``objects`` into ``folder``; with none, remove ftx's earlier files and say why (unless said already)."""
    if objects:
        result.written[folder.name] = write_objects(folder, objects)
        return
    removed = " (the files ftx wrote there before removed)" if remove_stale(folder, set()) else ""
    if why_not or removed:
        result.notes.append(f"{folder.name}/ not written{removed}" + (f": {why_not}" if why_not else ""))
