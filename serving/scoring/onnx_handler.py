"""Beam's ONNX model handler for ftx's ``model.onnx``, with a chosen intra-op thread count (imports Beam)."""

from __future__ import annotations

from apache_beam.ml.inference.onnx_inference import OnnxModelHandlerNumpy


class OnnxHandler(OnnxModelHandlerNumpy):
    """``OnnxModelHandlerNumpy`` whose session uses ``threads`` intra-op threads (0: ONNX Runtime's default, every
    core). Its own ``session_options`` argument would have to be pickled with the pipeline, and ONNX Runtime's
    SessionOptions does not pickle; a count does."""

    def __init__(self, model_uri: str, threads: int = 0, **kwargs) -> None:
        super().__init__(model_uri, **kwargs)
        self._threads = threads

    def load_model(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self._threads
        self._session_options = options
        try:
            return super().load_model()
        finally:
            self._session_options = None  # the handler may be pickled again (model updates, cluster runners)
