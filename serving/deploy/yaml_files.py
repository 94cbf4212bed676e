"""Kubernetes objects as YAML files: labelled as ftx's, written atomically, read back before they are kept.

Each file holds one object, so ``kubectl apply -f DIR/`` applies the folder.
A rerun replaces ftx's files and removes those it wrote before that no longer
belong (a model dropped from ``--name``), leaving anything else in the folder
alone: only files whose object carries ftx's ``managed-by`` label are touched.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from serving.tfs_config import ServingConfigError
from training.atomic import write_text

MANAGED_BY = {"app.kubernetes.io/managed-by": "ftx"}
HEADER = "# Written by `ftx serving-config`; regenerate it rather than edit it.\n"


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the config files inside the ConfigMap) as literal blocks, readable as written; no
    anchors and aliases for repeated parts (a shared labels dict is written out each time, as people write it)."""

    def ignore_aliases(self, data) -> bool:
        return True


def _represent_text(dumper: yaml.SafeDumper, text: str):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)


def metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {**labels, **MANAGED_BY}
    return meta


def dump(obj: dict) -> str:
    return HEADER + yaml.dump(obj, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=120)


def write_objects(folder: Path, objects: dict[str, dict]) -> list[Path]:
    """Write ``{file name: object}`` into ``folder``, re-read each, and drop ftx's files no longer written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, obj in objects.items():
        path = write_text(folder / filename, dump(obj))
        if read_object(path) != obj:
            raise ServingConfigError(f"{path} does not read back as the object written")
        paths.append(path)
    remove_stale(folder, set(objects))
    return paths


def remove_stale(folder: Path, keep: set[str]) -> list[Path]:
    """Remove the YAML files ftx wrote into ``folder`` whose names are not in ``keep``; returns them."""
    removed = []
    for stale in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if stale.name not in keep and _written_by_ftx(stale):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
            removed.append(stale)
    return removed


def read_object(path: Path) -> dict:
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ServingConfigError(f"cannot read {path} back: {error}") from None
    if not isinstance(obj, dict):
        raise ServingConfigError(f"{path} does not hold one Kubernetes object")
    return obj


def _written_by_ftx(path: Path) -> bool:
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    labels = (obj.get("metadata") or {}).get("labels") or {} if isinstance(obj, dict) else {}
    return isinstance(labels, dict) and labels.get("app.kubernetes.io/managed-by") == "ftx"
