"""The edge tests: ftx's TensorFlow-free paths, run as real processes.

In the edge venv (``make test-edge``) TensorFlow is absent and the model comes
from FTX_EDGE_EXPORT, built beforehand by the full install. In the full
install the same tests export the session's tiny run themselves and run every
ftx process with ``no_tensorflow`` on PYTHONPATH, which makes importing
TensorFlow, Keras, the converters or tensorflow-serving-api fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edge_helpers import Served  # noqa: E402


@pytest.fixture(scope="session")
def edge_models(request, tmp_path_factory) -> Path:
    """The base path of model ``tiny`` (version 1: SavedModel, ONNX, TFLite) and, beside it, its run and data."""
    given = os.environ.get("FTX_EDGE_EXPORT")
    if given:
        return Path(given) / "models" / "tiny"
    from make_export import make

    return make(tmp_path_factory.mktemp("edge"), request.getfixturevalue("tiny_run"))


@pytest.fixture
def serve():
    started: list[Served] = []

    def start(*flags: str) -> Served:
        started.append(Served(*flags))
        return started[-1]

    yield start
    for server in started:
        output = server.stop()
        assert "Traceback" not in output, output
