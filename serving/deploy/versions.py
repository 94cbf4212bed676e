"""Which exported versions may be deployed: blessed ones only.

``ftx export`` publishes a version the parity gate refused only with
``--allow-unblessed``, and marks it ``NOT_BLESSED``; a manifest must not
send such a version to a cluster. TF Serving (plain or under KServe) serves
whatever its version policy selects on the volume, so the policy is checked
against the versions on disk; Triton gets a copy of one blessed version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.manifest import MANIFEST_FILE
from export.versions import BLESSED_MARKER, existing_versions
from serving.model_store import aspired_versions, why_no_versions
from serving.tfs_config import ModelEntry



def is_blessed(version_dir: Path) -> bool:
    return (version_dir / BLESSED_MARKER).is_file() and (version_dir / MANIFEST_FILE).is_file()


def newest_blessed(model_dir: Path) -> int | None:
    """The newest integer version of ``model_dir`` that the parity gate blessed, or None."""
    blessed = [v for v in existing_versions(model_dir) if is_blessed(model_dir / str(v))]
    return blessed[-1] if blessed else None


@dataclass(frozen=True)
class Refusal:
    """Why a model cannot go into a manifest: one line, naming the model and what to do."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def no_blessed_reason(model_dir: Path) -> str:
    versions = existing_versions(model_dir)
    if not versions:
        return why_no_versions(model_dir)
    which = f"version {versions[0]} has" if len(versions) == 1 else f"versions {', '.join(map(str, versions))} have"
    return (f"no blessed version ({which} no {BLESSED_MARKER} marker: published with --allow-unblessed, or not "
            "ftx exports)")


def without_blessed(name: str, model_dir: Path) -> Refusal | None:
    """Why model ``name`` has nothing to deploy (no directory, no blessed version), or None."""
    if not model_dir.is_dir():
        return Refusal(name, f"no model directory {model_dir}; the manifests are made from the export here")
    if newest_blessed(model_dir) is None:
        return Refusal(name, no_blessed_reason(model_dir))
    return None


def check_policy(entry: ModelEntry, model_dir: Path) -> Refusal | None:
    """None when every version ``entry``'s policy selects on disk is blessed (and it selects one)."""
    refusal = without_blessed(entry.name, model_dir)
    if refusal is not None:
        return refusal
    on_disk = existing_versions(model_dir)
    selected = aspired_versions(entry, on_disk)
    unblessed = [v for v in selected if not is_blessed(model_dir / str(v))]
    if not selected:
        return Refusal(entry.name, f"the version policy selects none of the versions on disk {on_disk}; "
                                   f"try --version-policy specific:{newest_blessed(model_dir)}")
    if unblessed:
        return Refusal(entry.name, f"the version policy would serve version(s) {', '.join(map(str, unblessed))}, "
                                   f"which the parity gate did not bless; use --version-policy "
                                   f"specific:{newest_blessed(model_dir)} (the newest blessed one)")
    return None


def check_newest(name: str, model_dir: Path) -> Refusal | None:
    """KServe's TF Serving runtime serves the newest version under its storage URI: it must be blessed."""
    refusal = without_blessed(name, model_dir)
    if refusal is not None:
        return refusal
    newest = existing_versions(model_dir)[-1]
    if not is_blessed(model_dir / str(newest)):
        return Refusal(name, f"the newest version, {newest}, is not blessed, and KServe's TF Serving runtime always "
                             "serves the newest one")
    return None
