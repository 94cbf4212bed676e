"""training.data.numpy_decode against TensorFlow: the same pixels, bit for bit, for every kind of file.

The reference is the training pipeline itself (``decode.load_example`` inside a
tf.function, PIL fallback included), so a difference here is a difference
between what the model was trained on and what the edge server feeds it.
"""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path

import numpy as np
import png
import pytest
import tensorflow as tf
from PIL import Image

from training.data import numpy_decode
from training.data.decode import NO_ROI, load_example

SIZES = (224, 40, 61, 8)  # shrink, shrink to a non-divisor, same as the source height, enlarge... 8 px
_load = tf.function(lambda path, roi, size: load_example(path, tf.constant(0), roi, image_size=size, crop_roi=True)[0],
                    reduce_retracing=True)


def reference(path: Path, size: int, roi=NO_ROI) -> np.ndarray:
    return _load(tf.constant(str(path)), tf.constant(roi, tf.int32), size).numpy().astype(np.float32)


def _pattern(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Gradients plus noise: every resize weight matters, and JPEG has real detail to code."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 3 + y * 5 + k * 40) % 256 for k in range(channels)], axis=2)
    return np.clip(base + rng.integers(-30, 30, base.shape), 0, 255).astype(np.uint8)


def _write_png16(path: Path, values: np.ndarray, *, alpha: bool, interlace: bool = False) -> None:
    planes = values.shape[2]
    with path.open("wb") as handle:
        png.Writer(values.shape[1], values.shape[0], greyscale=planes < 3, alpha=alpha, bitdepth=16,
                   interlace=interlace).write(handle, values.reshape(values.shape[0], -1).tolist())


def _cmyk_jpeg(path: Path) -> None:
    y, x = np.mgrid[0:64, 0:48]
    ink = np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256, (x * y) % 256], axis=2).astype(np.uint8)
    Image.fromarray(ink, "CMYK").save(path, "JPEG", quality=95)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """One file per decoder path and pixel layout that datasets and clients send."""
    folder = tmp_path_factory.mktemp("kinds")
    rgb = _pattern(61, 83, 3)
    grey = rgb[:, :, 0]
    palette = Image.fromarray(rgb).quantize(64)
    sixteen = (rgb.astype(np.uint32) * 257 + np.random.default_rng(1).integers(0, 257, rgb.shape)).astype(np.uint16)
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        files[name] = folder / name
        image.save(files[name], **options)

    save("baseline-420.jpg", Image.fromarray(rgb), quality=90)
    save("444.jpg", Image.fromarray(rgb), quality=95, subsampling=0)
    save("422.jpg", Image.fromarray(rgb), quality=95, subsampling=1)
    save("progressive.jpg", Image.fromarray(rgb), progressive=True)
    save("grey.jpg", Image.fromarray(grey))
    files["cmyk.jpg"] = folder / "cmyk.jpg"
    _cmyk_jpeg(files["cmyk.jpg"])
    save("rgb.png", Image.fromarray(rgb))
    save("rgba.png", Image.fromarray(np.dstack([rgb, grey])))
    save("grey-alpha.png", Image.fromarray(np.dstack([grey, rgb[:, :, 1]]), "LA"))
    save("grey.png", Image.fromarray(grey))
    save("palette.png", palette)
    save("palette-transparent.png", palette, transparency=3)
    save("1-bit.png", Image.fromarray(grey > 128))
    save("grey16.png", Image.fromarray(sixteen[:, :, 0]))
    for name, values, alpha, interlace in (("rgb16-interlaced.png", sixteen, False, True),
                                           ("rgba16.png", np.dstack([sixteen, sixteen[:, :, :1]]), True, False),
                                           ("grey-alpha16.png", sixteen[:, :, :2], True, False)):
        files[name] = folder / name
        _write_png16(files[name], values, alpha=alpha, interlace=interlace)
    save("palette.gif", palette)
    save("transparent.gif", palette, transparency=5)
    frames = [Image.fromarray(_pattern(61, 83, 3, seed)).quantize(32) for seed in range(3)]
    files["animated.gif"] = folder / "animated.gif"
    frames[0].save(files["animated.gif"], save_all=True, append_images=frames[1:])
    save("24-bit.bmp", Image.fromarray(rgb))
    save("32-bit.bmp", Image.fromarray(np.dstack([rgb, grey])))
    save("palette.bmp", palette)
    save("1-bit.bmp", Image.fromarray(grey > 128))
    save("grey.bmp", Image.fromarray(grey))
    save("rgb.tiff", Image.fromarray(rgb))
    save("rgb.webp", Image.fromarray(rgb), quality=80)
    save("rgb.ppm", Image.fromarray(rgb))
    return files


KINDS = ("baseline-420.jpg 444.jpg 422.jpg progressive.jpg grey.jpg cmyk.jpg rgb.png rgba.png grey-alpha.png "
         "grey.png palette.png palette-transparent.png 1-bit.png grey16.png rgb16-interlaced.png rgba16.png "
         "grey-alpha16.png palette.gif transparent.gif animated.gif 24-bit.bmp 32-bit.bmp palette.bmp 1-bit.bmp "
         "grey.bmp rgb.tiff rgb.webp rgb.ppm").split()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_file_gives_the_training_pixels_exactly(image_files, kind):
    data = image_files[kind].read_bytes()
    for size in SIZES:
        expected = reference(image_files[kind], size)
        got = numpy_decode.load_image(data, size)
        assert got.dtype == np.float32 and got.shape == (size, size, 3)
        difference = np.abs(got - expected)
        assert not difference.any(), f"{kind} at {size} px: {np.count_nonzero(difference)} values differ, " \
                                     f"max {difference.max()}"


def test_the_jpeg_settings_matter_so_the_test_can_fail(image_files):
    """PIL's own JPEG decode (accurate IDCT) is not TensorFlow's: the exactness above is not a tautology."""
    path = image_files["baseline-420.jpg"]
    expected = reference(path, 61)
    with Image.open(path) as image:
        pil = numpy_decode.resize_rounded(np.asarray(image.convert("RGB"), np.float32), 61)
    assert np.abs(pil - expected).max() >= 1


def test_roi_crop_matches_the_pipeline(image_files):
    data = image_files["rgb.png"].read_bytes()
    for roi in ((5, 7, 40, 50), (0, 0, 200, 200), (70, 50, 90, 70), (-1, -1, -1, -1), (10, 10, 5, 5)):
        expected = reference(image_files["rgb.png"], 24, roi)
        got = numpy_decode.load_image(data, 24, None if roi == NO_ROI else roi)
        assert np.array_equal(got, expected), roi


def _real_photos() -> list[Path]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".bmp"))
    opencv = os.environ.get("FTX_OPENCV_DOC", "/usr/share/doc/opencv-doc/examples/data")
    photos += sorted(Path(p) for p in glob.glob(f"{opencv}/*.jpg"))  # Debian's opencv-doc, where installed
    return photos


def test_real_photos_give_the_training_pixels_exactly():
    photos = _real_photos()
    assert len(photos) >= 20, photos  # scikit-image ships about 40 photos and scans
    mismatched = []
    for path in photos:
        expected = reference(path, 224)
        if not np.array_equal(numpy_decode.load_image(path.read_bytes(), 224), expected):
            mismatched.append(path.name)
    assert not mismatched


@pytest.mark.parametrize("data, message", [
    (b"", "not in any image format Pillow reads"),
    (b"\xff\xd8\xff\xe0 not really a jpeg", None),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, None),
    (b"GIF89a", None),
])
def test_damaged_files_raise_one_error_type(data, message):
    with pytest.raises(numpy_decode.ImageDecodeError, match=message):
        numpy_decode.load_image(data, 16)


def test_truncated_files_are_refused_not_padded(image_files):
    for kind in ("baseline-420.jpg", "rgb.png", "rgb16-interlaced.png"):
        data = image_files[kind].read_bytes()
        with pytest.raises(numpy_decode.ImageDecodeError):
            numpy_decode.load_image(data[:len(data) // 2], 16)
        with pytest.raises(tf.errors.InvalidArgumentError):  # TensorFlow refuses them too
            reference_bytes = tf.constant(data[:len(data) // 2])
            tf.io.decode_image(reference_bytes, channels=3, expand_animations=False).numpy()


def test_tf_decodes_agrees_with_the_graph_test(image_files):
    from training.data.decode import tf_can_decode

    for kind, path in image_files.items():
        data = path.read_bytes()
        assert numpy_decode.tf_decodes(data) == bool(tf_can_decode(tf.constant(data)).numpy()), kind
    for data in (b"", b"BM", b"BM" + b"\0" * 40, io.BytesIO(b"x" * 50).getvalue()):
        assert numpy_decode.tf_decodes(data) == bool(tf_can_decode(tf.constant(data)).numpy()), data
