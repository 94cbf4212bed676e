"""The serving signatures: one code path, four ways in.

Following the TF Model Garden pattern, :class:`ClassifierServing` has one
``serve(images)`` that returns the named outputs, and one thin ``tf.function``
per input type that decodes and then calls it:

=================  ===========================  ==============================================
signature          inputs                       outputs
=================  ===========================  ==============================================
serving_default    ``images`` float32           ``probabilities`` float32 [batch, C],
                   [batch, H, W, 3], RGB 0-255   ``class_ids`` int32 [batch],
                                                 ``class_names`` string [batch]
serving_bytes      ``images_bytes`` string      same as serving_default
                   [batch] (JPEG/PNG/BMP/GIF)
serving_examples   ``examples`` string [batch]  same as serving_default
                   (tf.Example, ``image/encoded``)
classify           ``inputs`` string [batch]    ``classes`` string [batch, C],
                   (tf.Example)                  ``scores`` float32 [batch, C]
=================  ===========================  ==============================================

The ``_bytes`` suffix lets TF Serving's REST API accept ``{"b64": ...}``.
Encoded images are decoded to RGB (grey and RGBA converted, 16-bit scaled)
and resized by the training pipeline's own functions, so a file gives the
same pixels in training and in serving.
"""

from __future__ import annotations

import tensorflow as tf

from training.data.decode import decode_native, resize_rounded

SIGNATURE_TENSOR = "serving_default"
SIGNATURE_BYTES = "serving_bytes"
SIGNATURE_EXAMPLES = "serving_examples"
SIGNATURE_CLASSIFY = "classify"
IMAGE_FEATURE = "image/encoded"


class ClassifierServing(tf.Module):
    """Wraps a Keras classifier (raw RGB 0-255 in, probabilities out) with its labels."""

    def __init__(self, model, class_names: tuple[str, ...], image_size: int) -> None:
        super().__init__(name="ftx_serving")
        self.model = model
        self.image_size = int(image_size)
        self.class_names = tf.Variable(list(class_names), trainable=False, dtype=tf.string, name="class_names")
        size = self.image_size
        self.serve_images = tf.function(
            self._serve_images, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        self.serve_bytes = tf.function(
            self._serve_bytes, input_signature=[tf.TensorSpec([None], tf.string, name="images_bytes")])
        self.serve_examples = tf.function(
            self._serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        self.classify = tf.function(
            self._classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])

    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(self.model(images, training=False), tf.float32)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "class_ids": class_ids,
                "class_names": tf.gather(self.class_names, class_ids)}

    def decode(self, encoded: tf.Tensor) -> tf.Tensor:
        """One encoded image -> float32 [H, W, 3] RGB 0-255 at the model's size, as in training."""
        return resize_rounded(decode_native(encoded), self.image_size)

    def decode_batch(self, encoded: tf.Tensor) -> tf.Tensor:
        spec = tf.TensorSpec([self.image_size, self.image_size, 3], tf.float32)
        return tf.map_fn(self.decode, encoded, fn_output_signature=spec)

    def parse_examples(self, examples: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_example(examples, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        return features[IMAGE_FEATURE]

    def _serve_images(self, images):
        return self.serve(images)

    def _serve_bytes(self, images_bytes):
        return self.serve(self.decode_batch(images_bytes))

    def _serve_examples(self, examples):
        return self.serve(self.decode_batch(self.parse_examples(examples)))

    def _classify(self, inputs):
        scores = self.serve(self.decode_batch(self.parse_examples(inputs)))["probabilities"]
        classes = tf.tile(tf.expand_dims(self.class_names, 0), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    def signatures(self) -> dict:
        """The signature map for ``tf.saved_model.save``."""
        return {SIGNATURE_TENSOR: self.serve_images, SIGNATURE_BYTES: self.serve_bytes,
                SIGNATURE_EXAMPLES: self.serve_examples, SIGNATURE_CLASSIFY: self.classify}


def example_bytes(encoded_image: bytes) -> bytes:
    """A serialized tf.Example with the image under ``image/encoded`` (for clients and warmup)."""
    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded_image]))
    return tf.train.Example(features=tf.train.Features(feature={IMAGE_FEATURE: feature})).SerializeToString()
