"""Backbone table, weights handling and the safe torch checkpoint reader."""

from __future__ import annotations

import pickle
import zipfile

import keras
import numpy as np
import pytest

from training.backbones import BACKBONES, WeightsFileError, build_feature_extractor, get_backbone
from training.backbones.torch_checkpoint import LEGACY_MAGIC, UnsafeCheckpointError, load_state_dict
from training.backbones.weights import locate_weights, sha256_of


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ValueError, match="unknown backbone 'vgg19'; choose one of: mobilenet_v2, efficientnet_lite0"):
        get_backbone("vgg19")


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "keras_mobilenet_v2", "efficientnet_b0"])
def test_keras_applications_build_without_weights(name):
    model = build_feature_extractor(name, 32, weights="none")
    assert model.output_shape[-1] == BACKBONES[name].feature_channels


def test_keras_application_loads_a_local_weights_file(tmp_path):
    source = build_feature_extractor("keras_mobilenet_v2", 32, weights="none")
    path = tmp_path / "mine.weights.h5"
    source.save_weights(path)
    loaded = build_feature_extractor("keras_mobilenet_v2", 32, weights=str(path))
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_weights_file_is_a_clear_error():
    with pytest.raises(WeightsFileError, match="--weights '/nope.pth': no such file"):
        build_feature_extractor("mobilenet_v2", 32, weights="/nope.pth")
    with pytest.raises(WeightsFileError, match="--weights '/nope.h5': no such file"):
        build_feature_extractor("vgg16", 32, weights="/nope.h5")


def test_weights_file_of_the_wrong_kind_is_a_clear_error(tmp_path):
    keras_file = tmp_path / "k.weights.h5"
    build_feature_extractor("keras_mobilenet_v2", 32, weights="none").save_weights(keras_file)
    with pytest.raises(WeightsFileError, match="not a readable torch checkpoint for mobilenet_v2"):
        build_feature_extractor("mobilenet_v2", 32, weights=str(keras_file))
    lite = locate_weights(BACKBONES["efficientnet_lite0"].packaged_weights)
    with pytest.raises(WeightsFileError, match="does not fit mobilenet_v2"):
        build_feature_extractor("mobilenet_v2", 32, weights=str(lite))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_packaged_weights_are_verified_and_load_as_a_local_path(name):
    spec = BACKBONES[name]
    path = locate_weights(spec.packaged_weights)
    assert sha256_of(path) == spec.packaged_weights.sha256
    by_path = build_feature_extractor(name, 32, weights=str(path))
    default = build_feature_extractor(name, 32)
    for a, b in zip(by_path.weights, default.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    random = build_feature_extractor(name, 32, weights="none")
    assert not np.array_equal(random.weights[0].numpy(), default.weights[0].numpy())


def test_real_checkpoints_load_with_the_documented_parameter_counts():
    mobilenet = load_state_dict(locate_weights(BACKBONES["mobilenet_v2"].packaged_weights))
    lite = load_state_dict(locate_weights(BACKBONES["efficientnet_lite0"].packaged_weights))
    assert len(mobilenet) == 314 and mobilenet["classifier.1.weight"].shape == (1000, 1280)
    assert lite["_conv_stem.weight"].shape == (32, 3, 3, 3) and lite["_fc.weight"].shape == (1000, 1280)
    learnable = sum(v.size for k, v in mobilenet.items() if not k.endswith(("running_mean", "running_var",
                                                                             "num_batches_tracked")))
    assert learnable == 3_504_872
    assert sum(v.size for k, v in lite.items() if not k.endswith(("running_mean", "running_var",
                                                                   "num_batches_tracked"))) == 4_652_008


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_legacy_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001}, {"w": _Evil()}):
            pickle.dump(obj, handle, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load (posix|os).system"):
        load_state_dict(path)


def test_zip_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pth"
    path.write_bytes(pickle.dumps(123))
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        load_state_dict(path)


def test_preprocessing_layer_round_trips_through_model_keras(tmp_path):
    from training.backbones import Preprocessing
    from training.backbones.preprocessing import preprocessing_layer

    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, preprocessing_layer(Preprocessing(mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 2.0),
                                                                  bgr=True))(inputs))
    model.save(tmp_path / "m.keras")
    x = np.arange(48, dtype=np.float32).reshape(1, 4, 4, 3)
    expected = (x[..., ::-1] - np.array([1.0, 2.0, 3.0])) / 2.0
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0), expected,
                               rtol=1e-6)


def _zip_checkpoint(path, size, stride, offset, numel=4):
    """A hand-assembled zip checkpoint (pickle opcodes, no torch) with one float tensor of this layout."""

    def text(value: str) -> bytes:
        return b"X" + len(value).to_bytes(4, "little") + value.encode()

    def integer(value: int) -> bytes:
        return b"J" + value.to_bytes(4, "little", signed=True)

    def tup(values) -> bytes:
        return b"(" + b"".join(integer(v) for v in values) + b"t"

    storage = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + integer(numel) + b"tQ"
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + integer(offset) + tup(size) + tup(stride)
              + b"\x89Nt" + b"R")
    data = b"\x80\x02}" + text("w") + tensor + b"s."
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/data/0", np.arange(numel, dtype="<f4").tobytes())
    return path


def test_hand_made_checkpoint_loads_and_transposed_views_are_honoured(tmp_path):
    state = load_state_dict(_zip_checkpoint(tmp_path / "ok.pt", (2, 2), (1, 2), 0))
    np.testing.assert_array_equal(state["w"], [[0.0, 2.0], [1.0, 3.0]])


@pytest.mark.parametrize("size,stride,offset", [((2, 2), (100, 1), 0), ((4,), (1,), 3), ((2,), (-1,), 1)])
def test_tensor_views_outside_their_storage_are_refused(tmp_path, size, stride, offset):
    with pytest.raises(ValueError, match="overruns its storage|invalid layout"):
        load_state_dict(_zip_checkpoint(tmp_path / "bad.pt", size, stride, offset))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_classifier_exports_to_a_saved_model(name, tmp_path):
    """Layer names become variable scopes: SavedModel refuses some (a leading '_' once broke Lite0)."""
    import tensorflow as tf

    from training.model import build_classifier

    model = build_classifier(name, 3, image_size=32).model
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(images)).numpy()
    np.testing.assert_allclose(served, model.predict(images, verbose=0), atol=1e-5)


@pytest.mark.parametrize("spec, ops", [
    (dict(scale=1 / 127.5, offset=-1.0), ["MUL", "ADD"]),  # mobilenet_v2
    (dict(scale=1 / 255.0), ["MUL"]),
    (dict(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4)), ["MUL", "ADD"]),  # per-channel torch style
])
def test_preprocessing_is_at_most_one_multiply_and_one_add(spec, ops):
    """Each elementwise op is a requantization step in an int8 export; identities must not become ops."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema

    from training.backbones import Preprocessing
    from training.backbones.preprocessing import preprocessing_layer

    preprocessing = Preprocessing(**spec)
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, preprocessing_layer(preprocessing)(inputs))
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, 3)).astype(np.float32)
    expected = (x * preprocessing.scale + preprocessing.offset - np.array(preprocessing.mean)) / np.array(preprocessing.std)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    flat = schema.Model.GetRootAsModel(tf.lite.TFLiteConverter.from_keras_model(model).convert(), 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    graph = flat.Subgraphs(0)
    assert [names[flat.OperatorCodes(graph.Operators(i).OpcodeIndex()).BuiltinCode()]
            for i in range(graph.OperatorsLength())] == ops
