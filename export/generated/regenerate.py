"""Regenerate ``metadata_schema_generated.py`` from the TFLite Metadata schema: ``python -m export.generated.regenerate``.

The schema, ``metadata_schema.fbs``, is the one the tflite-support wheel on
PyPI ships (``tensorflow_lite_support/metadata/metadata_schema.fbs``,
tflite-support 0.4.4, schema version 1.5.0): ``--fetch`` takes it from that
wheel again with ``pip download``. tflite-support itself is not a dependency:
it pins protobuf below 4, which TensorFlow's protobuf is not. The Python
module is flatc's output (Debian's ``flatbuffers-compiler``), object API in one
file; tests/test_tflite_metadata.py regenerates it and compares.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "metadata_schema.fbs"
GENERATED = HERE / "metadata_schema_generated.py"
WHEEL = "tflite-support==0.4.4"
WHEEL_MEMBER = "tensorflow_lite_support/metadata/metadata_schema.fbs"


def flatc_path() -> str | None:
    """``FTX_FLATC`` (what ``make tools`` unpacks) or flatc on the PATH."""
    given = os.environ.get("FTX_FLATC")
    return given if given and Path(given).is_file() else shutil.which("flatc")


def generate(schema: Path, out_dir: Path) -> Path:
    """flatc's Python for ``schema`` (object API, one file) in ``out_dir``; returns the file."""
    flatc = flatc_path()
    if flatc is None:
        raise FileNotFoundError("flatc not found: apt-get install flatbuffers-compiler, or set FTX_FLATC")
    subprocess.run([flatc, "--python", "--gen-object-api", "--gen-onefile", "-o", str(out_dir), str(schema)],
                   check=True, capture_output=True, text=True)
    return out_dir / f"{schema.stem}_generated.py"


def fetch_schema(dest: Path) -> None:
    """The schema from the tflite-support wheel (PyPI)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp,
                        WHEEL], check=True, capture_output=True, text=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            dest.write_bytes(archive.read(WHEEL_MEMBER))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetch", action="store_true", help=f"take the schema from the {WHEEL} wheel first")
    args = parser.parse_args()
    if args.fetch:
        fetch_schema(SCHEMA)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(generate(SCHEMA, Path(tmp)), GENERATED)
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
