"""Turn a file into a fixed-size RGB image inside a tf.data graph.

JPEG, PNG, GIF and plain 24/32-bit BMP go through TensorFlow's own decoder
(fast, parallel, no Python). Anything else PIL can read (GTSRB's PPM, TIFF,
WebP, palette or 1-bit BMP, which TensorFlow decodes wrongly or not at all)
falls back to PIL through ``tf.numpy_function``. The format is told by the
file's first bytes, not its name.

Both paths give whole RGB values 0-255: 16-bit PNGs are scaled (65535 -> 255),
grey is repeated to three channels and alpha is dropped.
"""

from __future__ import annotations

import tensorflow as tf

from training.data.pil_decode import pil_decode

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8")  # JPEG, PNG, GIF
_HEAD = 34  # a BMP's bits-per-pixel sits at byte 28, its compression at byte 30
NO_ROI = (-1, -1, -1, -1)


def tf_can_decode(data: tf.Tensor) -> tf.Tensor:
    """True when TensorFlow's decoders give the right pixels for these file bytes."""
    head = tf.strings.join([tf.strings.substr(data, 0, _HEAD), tf.constant(b"\0" * _HEAD)])

    def at(pos: int, value: bytes) -> tf.Tensor:
        return tf.equal(tf.strings.substr(head, pos, len(value)), value)

    bmp = tf.logical_and(at(0, b"BM"), at(30, b"\0\0\0\0"))  # uncompressed
    bmp = tf.logical_and(bmp, tf.logical_or(at(28, b"\x18\x00"), at(28, b"\x20\x00")))  # 24 or 32 bits
    known = [at(0, magic) for magic in _MAGIC] + [bmp]
    return tf.reduce_any(tf.stack(known))


def decode_native(data: tf.Tensor) -> tf.Tensor:
    """TensorFlow's decoders only: graph-serialisable, so the exported model's bytes signature uses it too."""
    # float32 output is value / (2**bits - 1), so * 255 serves 8- and 16-bit files alike.
    image = tf.io.decode_image(data, channels=3, dtype=tf.float32, expand_animations=False)
    return tf.round(image * 255.0)


def _decode_pil(path: tf.Tensor) -> tf.Tensor:
    image = tf.numpy_function(pil_decode, [path], tf.float32, stateful=False)
    image.set_shape([None, None, 3])
    return image


def decode_rgb(path: tf.Tensor, data: tf.Tensor) -> tf.Tensor:
    """``float32 [H, W, 3]`` with whole values 0-255 from a file's path and bytes."""
    image = tf.cond(tf_can_decode(data), lambda: decode_native(data), lambda: _decode_pil(path))
    image.set_shape([None, None, 3])
    return image


def crop_to_roi(image: tf.Tensor, roi: tf.Tensor) -> tf.Tensor:
    """Crop to ``roi`` = (x1, y1, x2, y2), slice bounds clamped to the image; ``NO_ROI`` keeps it whole."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x1 = tf.clip_by_value(roi[0], 0, width - 1)
    y1 = tf.clip_by_value(roi[1], 0, height - 1)
    x2 = tf.clip_by_value(roi[2], x1 + 1, width)
    y2 = tf.clip_by_value(roi[3], y1 + 1, height)
    usable = tf.reduce_all(tf.stack([roi[0] >= 0, roi[1] >= 0, roi[2] > roi[0], roi[3] > roi[1]]))
    return tf.cond(usable, lambda: image[y1:y2, x1:x2], lambda: image)


def load_example(path: tf.Tensor, label: tf.Tensor, roi: tf.Tensor, *, image_size: int,
                 crop_roi: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """``(uint8 [S, S, 3], label)``: decode, optionally crop, resize.

    Resizing is bilinear with antialiasing (a proper low-pass filter when
    shrinking large photos; no effect when enlarging), without keeping the
    aspect ratio, as Keras' loaders do by default. The result is rounded to
    whole 0-255 values so caches and shuffle buffers hold uint8, a quarter of
    float32's memory; ``make_dataset`` hands out float32.
    """
    image = decode_rgb(path, tf.io.read_file(path))
    if crop_roi:
        image = crop_to_roi(image, roi)
    return tf.cast(resize_rounded(image, image_size), tf.uint8), label


def resize_rounded(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """float32 ``[S, S, 3]`` of whole values 0-255: the one resize of training and serving alike."""
    image = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
    image.set_shape([image_size, image_size, 3])
    return image
