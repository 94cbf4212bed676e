"""Which install has what: the edge install (``ftx[edge]``) lacks TensorFlow and the converters.

A command that needs a package the edge install leaves out says so in one
line, with the pip command, instead of an ImportError's traceback.
"""

from __future__ import annotations

import importlib.util

FULL_INSTALL = "pip install 'ftx[cpu]' (CUDA: 'ftx[gpu]')"
EDGE_INSTALL = "pip install 'ftx[edge]' (CUDA: 'ftx[edge-gpu]')"
# top-level module -> (what it is, the install that has it)
PROVIDERS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TensorFlow", FULL_INSTALL),
    "keras": ("Keras", FULL_INSTALL),
    "tf2onnx": ("tf2onnx", FULL_INSTALL),
    "onnx": ("the onnx package", FULL_INSTALL),
    "tensorflow_serving": ("tensorflow-serving-api", FULL_INSTALL),
    "tomli_w": ("tomli-w", FULL_INSTALL),
    "markdown": ("markdown", FULL_INSTALL),
    "apache_beam": ("Apache Beam (apache-beam)", FULL_INSTALL),
    "matplotlib": ("matplotlib", "pip install 'ftx[plots]' (or the full install, 'ftx[cpu]')"),
    "onnxruntime": ("ONNX Runtime", EDGE_INSTALL),
    "ai_edge_litert": ("LiteRT (ai-edge-litert)", EDGE_INSTALL),
}


def has(module: str) -> bool:
    """True when ``module`` can be imported here (looked up, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-removed package
        return False


def lacking(module: str) -> str:
    """"needs <package>, which this install does not have; pip install ...": the tail of a one-line error."""
    package, install = PROVIDERS.get(module, (module, FULL_INSTALL))
    return f"needs {package}, which this install does not have; {install}"


FULL_ONLY_COMMANDS = ("train", "export", "run", "demo")  # nothing of these runs without TensorFlow


def missing_install_message(error: ModuleNotFoundError, command: str = "") -> str | None:
    """"needs <package>...; pip install ..." for an import that failed because this install lacks a package."""
    top = (error.name or "").split(".")[0]
    if top not in PROVIDERS:
        return None
    if command in FULL_ONLY_COMMANDS and PROVIDERS[top][1] == FULL_INSTALL:
        return f"needs the full install (TensorFlow, Keras, tf2onnx), which this one is not; {FULL_INSTALL}"
    return lacking(top)
