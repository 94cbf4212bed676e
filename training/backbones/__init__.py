"""The backbone table: one entry per supported ImageNet backbone.

Training, export and benchmarks all read :data:`BACKBONES`, so a backbone's
input size, preprocessing and weights source are declared once.

Public API: :data:`BACKBONES`, :class:`BackboneSpec`, :func:`get_backbone`,
:func:`build_feature_extractor`, :func:`build_imagenet_classifier`,
:func:`imagenet_class_names`.
"""

from __future__ import annotations

from training.backbones.spec import (
    BACKBONES,
    BackboneSpec,
    build_feature_extractor,
    build_imagenet_classifier,
    get_backbone,
    imagenet_class_names,
)

__all__ = ["BACKBONES", "BackboneSpec", "build_feature_extractor", "build_imagenet_classifier",
           "get_backbone", "imagenet_class_names"]
