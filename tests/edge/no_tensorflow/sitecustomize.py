"""Put this folder on PYTHONPATH and TensorFlow, Keras, the converters and tensorflow-serving-api fail to import.

The edge tests run ftx's processes with it in the full install, so that "runs
without TensorFlow" is checked there too, not only in the edge venv where
those packages are truly absent.
"""

import importlib.abc
import sys

BLOCKED = {"tensorflow", "keras", "tf2onnx", "onnx", "tensorflow_serving", "tf_keras"}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/edge/no_tensorflow)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
