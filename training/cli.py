"""The ``ftx`` console script: a thin dispatcher over the stages' own CLIs.

Each subcommand lives in the module of the stage that owns it and is imported
only when that subcommand runs, so ``ftx --help`` stays fast and ``ftx train``
never imports the exporters. A stage module exposes
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from training.installs import missing_install_message
from training.native_stderr import filter_native_stderr
from training.terminal import configure_logging

# subcommand -> (module, one-line help). Later stages add their rows here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.train_cli", "fine-tune a backbone on a folder of images"),
    "demo": ("benchmarks.demo_cli", "ftx run on the embedded default (Fashion-MNIST, 40 images per class, mobilenet_v2)"),
    "cache": ("training.cache_cli", "show or fill the ftx cache (weights and datasets)"),
    "export": ("export.cli", "SavedModel for TF Serving, ONNX and TFLite from a run, checked by a parity gate"),
    "serving-config": ("serving.config_cli", "TF Serving's models.config, batching.config and monitoring.config"),
    "serve": ("serving.serve_cli", "TF Serving's gRPC and REST API over ONNX Runtime (or the SavedModel)"),
    "client": ("serving.client_cli", "predict, classify, metadata and status against TF Serving or ftx serve"),
    "bench": ("benchmarks.cli", "latency, throughput and accuracy of every format of an export, and of ftx serve"),
    "run": ("benchmarks.run_cli", "train -> export -> parity gate -> serving smoke test -> bench -> report, resumable"),
    "score": ("serving.scoring.cli", "score image files with Apache Beam's RunInference (ONNX or the SavedModel)"),
}



class HelpFormatter(argparse.HelpFormatter):
    """Each default said once, required arguments marked, and no reStructuredText quotes from docstrings."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace("``", "")
        if action.required and action.option_strings:
            return f"{text} (required)"
        unset = action.default is None or action.default is False or action.default is argparse.SUPPRESS \
            or (isinstance(action.default, (str, list, tuple)) and not action.default)
        said = "default" in text.lower() or unset  # a default of 0 is a value worth saying, False is not
        if said or not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if isinstance(action.default, bool):  # tensorflow_model_server's spelling of its flags' values
            return f"{text} (default: {str(action.default).lower()})"
        return f"{text} (default: %(default)s)"

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.replace("``", ""))


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return f"ftx {version('ftx')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "ftx (not installed)"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftx", description="Fine-tune, export, serve and benchmark image classifiers.",
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and every library's log lines")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    parser.subcommand_parsers = {}
    for name, (module, summary) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=summary, description=summary, allow_abbrev=False,
                                    formatter_class=HelpFormatter)
        parser.subcommand_parsers[name] = sub_parser
        if name == wanted:  # import only the module of the subcommand being run
            importlib.import_module(module).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args, unknown = parser.parse_known_args(argv)
        if unknown and getattr(importlib.import_module(SUBCOMMANDS[args.command][0]), "PASS_THROUGH", False):
            args.pipeline_args, unknown = unknown, []  # ftx score: Beam's own options, passed on unchanged
        if unknown:  # argparse would print the top-level usage; the subcommand's is the one that helps
            parser.subcommand_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    except ModuleNotFoundError as error:  # the subcommand's module (add_arguments) needs what this install lacks
        return _missing_install(error, next(a for a in argv if not a.startswith("-")))
    configure_logging(args.verbose)
    signal.signal(signal.SIGTERM, _terminated)  # clean up staged output on `kill` as on Ctrl-C
    try:
        module = importlib.import_module(SUBCOMMANDS[args.command][0])
        return int(module.run(args) or 0)
    except ModuleNotFoundError as error:  # the edge install lacks TensorFlow and the converters
        return _missing_install(error, args.command)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


def _missing_install(error: ModuleNotFoundError, command: str) -> int:
    """One line naming what this install lacks and the pip command; anything else missing is a real bug."""
    message = missing_install_message(error, command)
    if message is None:
        raise error
    print(f"ftx {command}: {message}", file=sys.stderr)
    return 2


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so every ``finally`` and staged-directory cleanup runs."""


def _terminated(signum, frame) -> None:
    raise Terminated()


def console() -> int:
    """The ``ftx`` console script: ``main`` with TensorFlow's C++ log lines filtered out unless -v."""
    argv = sys.argv[1:]
    if not any(arg in ("-v", "--verbose") for arg in argv[:argv.index("--") if "--" in argv else None]):
        filter_native_stderr()
    return main(argv)


if __name__ == "__main__":
    sys.exit(console())
