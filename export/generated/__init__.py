"""Generated code: the TFLite Metadata schema's flatbuffer classes (see regenerate.py). Do not edit by hand."""
