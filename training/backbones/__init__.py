"""ImageNet backbones: the table (keras-free) and the builders (import Keras on first use).

Public API: :data:`BACKBONES`, :class:`BackboneSpec`, :class:`Preprocessing`,
:func:`get_backbone` (from ``table``); :func:`build_feature_extractor`,
:func:`build_imagenet_classifier`, :func:`imagenet_class_names` (from ``build``).
"""

from __future__ import annotations

from typing import Any

from training.backbones.table import BACKBONES, BackboneSpec, Preprocessing, get_backbone

_BUILDERS = ("build_feature_extractor", "build_imagenet_classifier", "imagenet_class_names", "WeightsFileError")

__all__ = ["BACKBONES", "BackboneSpec", "Preprocessing", "get_backbone", *_BUILDERS]


def __getattr__(name: str) -> Any:
    if name in _BUILDERS:  # imported on first use: it pulls in Keras and TensorFlow
        from training.backbones import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
