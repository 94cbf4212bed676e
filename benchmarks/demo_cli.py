"""``ftx demo``: ``ftx run`` on the embedded default, no arguments needed.

Fashion-MNIST in the small-data layout (28 train + 12 valid per class, 10,000
test images), ``mobilenet_v2`` with its ImageNet weights fine-tuned, exported,
served and benchmarked. ``ftx demo --print-config`` shows every setting; save
it as a file and edit it for ``ftx run``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from benchmarks import run_cli

    run_cli.add_arguments(parser, demo=True)
    parser.description = __doc__.strip().splitlines()[0]


def run(args: argparse.Namespace) -> int:
    from benchmarks import run_cli

    return run_cli.run(args, base=run_cli.DEMO)
