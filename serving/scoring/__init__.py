"""``ftx score``: batch scoring of image files on Apache Beam's RunInference (the full install).

``images`` lists what to score, ``handlers`` holds Beam's model handlers for
the two formats, ``pipeline`` builds and runs the Beam pipeline, ``cli`` is
the command line. Decoding is serving's own (``serving.servable.decode_image``),
so a file scores as ``ftx serve`` would answer for its bytes.
"""
