"""The tf.data pipeline: exact pixels for every image kind, the shuffle-order contract, augmentation."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from training.data import AugmentConfig, Record, make_dataset

SIZE = 16


def _save(path: Path, image: Image.Image, fmt: str | None = None, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)
    return path


def _png16_rgb(path: Path, rgb: tuple[int, int, int], size=(5, 3)) -> Path:
    """A 16-bit-per-channel RGB PNG, which PIL cannot write."""
    width, height = size
    rows = b"".join(b"\0" + struct.pack(">HHH", *rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _palette(color: tuple[int, int, int], mode: str = "P") -> Image.Image:
    image = Image.new("P", (7, 5), 1)
    image.putpalette([0, 0, 0, *color] + [0] * 762)
    return image


def _pixels(records: list[Record], **kwargs) -> np.ndarray:
    options = dict(shuffle=False, seed=0, augment=None, cache=False) | kwargs
    batches = list(make_dataset(records, SIZE, 64, **options))
    images = np.concatenate([b[0].numpy() for b in batches])
    assert batches[0][0].dtype == tf.float32 and batches[0][1].dtype == tf.int32
    assert images.shape[1:] == (SIZE, SIZE, 3)
    return images


# (file name, writer, exact RGB expected everywhere in the image)
SOLID_CASES = [
    ("rgb.png", lambda p: _save(p, Image.new("RGB", (5, 7), (10, 200, 30))), (10, 200, 30)),
    ("grey.png", lambda p: _save(p, Image.new("L", (5, 7), 77)), (77, 77, 77)),
    ("grey-alpha.png", lambda p: _save(p, Image.new("LA", (5, 7), (90, 10))), (90, 90, 90)),
    ("rgba.png", lambda p: _save(p, Image.new("RGBA", (5, 7), (10, 20, 30, 128))), (10, 20, 30)),
    ("palette.png", lambda p: _save(p, _palette((200, 100, 50))), (200, 100, 50)),
    ("grey16.png", lambda p: _save(p, Image.fromarray(np.full((7, 5), 51400, np.uint16))), (200, 200, 200)),
    ("grey16-max.png", lambda p: _save(p, Image.fromarray(np.full((7, 5), 65535, np.uint16))), (255, 255, 255)),
    ("rgb16.png", lambda p: _png16_rgb(p, (51400, 2570, 65535)), (200, 10, 255)),
    ("rgb.ppm", lambda p: _save(p, Image.new("RGB", (5, 7), (1, 2, 250))), (1, 2, 250)),
    ("grey16.pgm", lambda p: _save(p, Image.fromarray(np.full((7, 5), 51400, np.uint16)), "PPM"), (200, 200, 200)),
    ("palette.bmp", lambda p: _save(p, _palette((9, 180, 60))), (9, 180, 60)),
    ("rgb.bmp", lambda p: _save(p, Image.new("RGB", (5, 7), (33, 66, 99))), (33, 66, 99)),
    ("palette.gif", lambda p: _save(p, _palette((120, 5, 240))), (120, 5, 240)),
    ("grey16.tif", lambda p: _save(p, Image.fromarray(np.full((7, 5), 25700, np.uint16))), (100, 100, 100)),
    ("lossless.webp", lambda p: _save(p, Image.new("RGB", (5, 7), (44, 55, 66)), lossless=True), (44, 55, 66)),
]


def test_solid_colours_decode_to_exact_rgb(tmp_path):
    records = [Record(writer(tmp_path / name), label) for label, (name, writer, _) in enumerate(SOLID_CASES)]
    images = _pixels(records)
    for image, (name, _, rgb) in zip(images, SOLID_CASES, strict=True):
        assert np.array_equal(image, np.broadcast_to(np.float32(rgb), image.shape)), (name, image[0, 0])


def test_jpeg_decodes_natively_close_to_its_colour(tmp_path):
    path = _save(tmp_path / "x.jpg", Image.new("RGB", (40, 30), (200, 40, 90)), quality=95)
    image = _pixels([Record(path, 0)])[0]
    assert np.abs(image - np.float32((200, 40, 90))).max() <= 3


def test_roi_crop_only_when_asked(tmp_path):
    halves = np.zeros((10, 12, 3), np.uint8)
    halves[:, :6] = (255, 0, 0)
    halves[:, 6:] = (0, 0, 255)
    record = Record(_save(tmp_path / "halves.ppm", Image.fromarray(halves)), 0, roi=(0, 0, 6, 10))
    cropped = _pixels([record], crop_roi=True)[0]
    assert np.array_equal(cropped, np.broadcast_to(np.float32((255, 0, 0)), cropped.shape))
    whole = _pixels([record])[0]
    assert whole[:, -1, 2].min() == 255 and whole[:, 0, 0].min() == 255


def _indexed_images(root: Path, count: int) -> list[Record]:
    """Image i is a solid (i, 255 - i, 0) square labelled i, so pixels and labels must stay paired."""
    return [Record(_save(root / f"{i:03d}.png", Image.new("RGB", (4, 4), (i, 255 - i, 0))), i) for i in range(count)]


def _reference_order(count: int, seed: int, epochs: int) -> list[list[int]]:
    reference = tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True)
    return [[int(i) for i in reference] for _ in range(epochs)]


@pytest.mark.parametrize("cache", [False, True, "file"])
def test_shuffle_order_matches_a_same_length_index_dataset(tmp_path, cache):
    records = _indexed_images(tmp_path / "images", 23)
    cache = str(tmp_path / "cache") if cache == "file" else cache
    dataset = make_dataset(records, 8, 5, shuffle=True, seed=7, augment=None, cache=cache)
    epochs = []
    for _ in range(2):
        labels, reds = [], []
        for images, batch_labels in dataset:
            labels += batch_labels.numpy().tolist()
            reds += images.numpy()[:, 0, 0, 0].astype(int).tolist()
        assert reds == labels  # every image still carries its own label
        epochs.append(labels)
    assert epochs == _reference_order(23, 7, 2)
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == list(range(23))


def test_no_shuffle_keeps_record_order(tmp_path):
    records = _indexed_images(tmp_path, 7)
    labels = [int(y) for _, batch in make_dataset(records, 4, 3, shuffle=False, seed=1, augment=None, cache=True)
              for y in batch]
    assert labels == list(range(7))


def test_augmentation_only_when_asked_and_stays_in_range(tmp_path):
    gradient = np.stack([*np.meshgrid(np.arange(32) * 8, np.arange(32) * 8), np.full((32, 32), 128)], -1)
    path = _save(tmp_path / "gradient.png", Image.fromarray(gradient.astype(np.uint8)))
    records = [Record(path, 0)] * 8
    plain = _pixels(records)
    assert np.array_equal(plain, _pixels(records, augment=AugmentConfig()))  # the default is all off: untouched
    config = AugmentConfig(flip=True, rotation=0.1, zoom=0.2, contrast=0.3, brightness=0.3)
    augmented = _pixels(records, augment=config, shuffle=True, seed=3)
    assert augmented.dtype == np.float32 and augmented.min() >= 0.0 and augmented.max() <= 255.0
    assert not np.allclose(augmented, plain)
    assert len({a.tobytes() for a in augmented}) > 1  # each image gets its own transform


def test_augment_config_default_is_no_augmentation():
    assert AugmentConfig() == AugmentConfig(flip=False, rotation=0.0, zoom=0.0, contrast=0.0, brightness=0.0)
    assert not AugmentConfig().enabled and AugmentConfig(zoom=0.1).enabled


def test_augment_config_checks_its_values():
    with pytest.raises(ValueError, match=r"AugmentConfig.rotation must be a number in \[0, 0.5\), got 0.7"):
        AugmentConfig(rotation=0.7)
    with pytest.raises(ValueError, match="zoom"):
        AugmentConfig(zoom=-0.1)


def test_a_file_that_breaks_mid_run_is_dropped_not_fatal(tmp_path):
    records = _indexed_images(tmp_path, 4)
    records[1].path.write_bytes(b"\x89PNG\r\n\x1a\n broken after the check")
    records[2].path.unlink()
    labels = [int(y) for _, batch in make_dataset(records, 4, 8, shuffle=False, seed=0, augment=None, cache=False)
              for y in batch]
    assert labels == [0, 3]


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="image_size must be a positive int, got 0"):
        make_dataset([], 0, 4, shuffle=False, seed=0, augment=None, cache=False)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got '8'"):
        make_dataset([], 8, "8", shuffle=False, seed=0, augment=None, cache=False)
    empty = make_dataset([], 8, 4, shuffle=True, seed=0, augment=None, cache=False)
    assert list(empty) == []


def test_pil_decode_scales_sixteen_bit_and_drops_alpha(tmp_path):
    from training.data.pil_decode import pil_decode, pil_to_rgb

    path = _save(tmp_path / "grey16.tif", Image.fromarray(np.full((3, 2), 25700, np.uint16)))
    assert np.array_equal(pil_decode(str(path).encode()), np.full((3, 2, 3), 100, np.float32))
    assert np.array_equal(pil_to_rgb(Image.new("RGBA", (2, 2), (1, 2, 3, 4)))[0, 0], np.float32((1, 2, 3)))


def test_tensorflow_decodes_only_what_it_decodes_right(tmp_path):
    from training.data.decode import tf_can_decode

    expected = {"rgb.png": True, "grey16.png": True, "palette.gif": True, "rgb.bmp": True, "palette.bmp": False,
                "rgb.ppm": False, "grey16.tif": False, "lossless.webp": False}
    writers = {name: writer for name, writer, _ in SOLID_CASES}
    for name, native in expected.items():
        data = writers[name](tmp_path / name).read_bytes()
        assert bool(tf_can_decode(tf.constant(data))) is native, name
    assert not bool(tf_can_decode(tf.constant(b"")))


def test_a_file_cache_prefix_is_never_read_back_for_other_data(tmp_path):
    records = _indexed_images(tmp_path / "images", 3)
    prefix = str(tmp_path / "caches" / "train")
    for size, subset in ((8, records), (4, records), (4, records[:2])):
        dataset = make_dataset(subset, size, 8, shuffle=False, seed=0, augment=None, cache=prefix)
        images, labels = next(iter(dataset))
        assert images.shape == (len(subset), size, size, 3) and labels.numpy().tolist() == list(range(len(subset)))
    assert len(list((tmp_path / "caches").glob("train-*.index"))) == 3
