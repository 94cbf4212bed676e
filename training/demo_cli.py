"""``ftx demo``: the whole training job on the embedded default data, no arguments needed.

Fashion-MNIST in the small-data layout (28 train + 12 valid per class, 10,000
test images), ``mobilenet_v2`` with its ImageNet weights, fine-tuned.
"""

from __future__ import annotations

import argparse

from training import train_cli

DEMO = {"data": "fashion-mnist", "backbone": "mobilenet_v2", "strategy": "fine-tune", "epochs": 10}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(parser)
    parser.description = (f"{__doc__.strip().splitlines()[0]} Demo settings: {DEMO}; any `ftx train` flag "
                          "overrides them.")


def run(args: argparse.Namespace) -> int:
    return train_cli.run(args, base=DEMO)
