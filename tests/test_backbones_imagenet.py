"""The ported backbones are right: real photos come out as the original torch models said.

Reference values were recorded once from the original weights in PyTorch
(tests/data/make_imagenet_reference.py, torchvision 0.28 for MobileNetV2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imagenet_photos import PHOTO_NAMES, load_photo
from training.backbones import build_imagenet_classifier, imagenet_class_names

REFERENCE = json.loads((Path(__file__).parent / "data" / "imagenet_reference.json").read_text())
BACKBONE_NAMES = sorted(REFERENCE["backbones"])


@pytest.fixture(scope="module", params=BACKBONE_NAMES)
def ported(request):
    name = request.param
    model = build_imagenet_classifier(name)
    photos = np.stack([load_photo(p) for p in PHOTO_NAMES]).astype(np.float32)
    return name, dict(zip(PHOTO_NAMES, model.predict(photos, verbose=0)))


def test_photos_are_the_recorded_ones():
    import hashlib

    for name in PHOTO_NAMES:
        assert hashlib.sha256(load_photo(name).tobytes()).hexdigest() == REFERENCE["header"]["photo_sha256"][name]


def test_class_names_file_has_1000_imagenet_classes():
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[285] == "Egyptian cat" and names[967] == "espresso"


def test_ported_backbone_matches_torch_on_real_photos(ported):
    name, probabilities = ported
    for photo, expected in REFERENCE["backbones"][name]["photos"].items():
        probs = probabilities[photo]
        top5 = list(np.argsort(probs)[::-1][:5])
        reference_top5 = expected["top5_indices"]
        assert top5[0] == reference_top5[0], f"{name}/{photo}: top-1 {top5[0]} != torch {reference_top5[0]}"
        np.testing.assert_allclose(probs[reference_top5], expected["top5_probs"], atol=1e-5,
                                   err_msg=f"{name}/{photo}: probabilities differ from torch")


@pytest.mark.parametrize("photo,imagenet_class", [("chelsea", 285), ("coffee", 967), ("camera", 872)])
def test_known_photos_have_their_class_in_top5(ported, photo, imagenet_class):
    name, probabilities = ported
    assert imagenet_class in np.argsort(probabilities[photo])[::-1][:5]
