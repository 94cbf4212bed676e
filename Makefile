# Two entry points a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EDGE_VENV := .venv-edge
EDGE_WORK := $(CURDIR)/build/edge-test
# Outside checkers the tests use, unpacked without root: flatc (Debian) regenerates the TFLite Metadata schema
# classes; tflite-support's own MetadataDisplayer (PyPI, installed apart: it pins protobuf<4) reads ftx's
# .tflite files back, with the libusb it links against (Debian).
TOOLS := $(CURDIR)/build/tools
TOOLS_ENV := FTX_FLATC=$(TOOLS)/root/usr/bin/flatc FTX_TFLITE_SUPPORT=$(TOOLS)/tflite-support \
	FTX_TFLITE_SUPPORT_LIBS=$(TOOLS)/root/usr/lib/x86_64-linux-gnu

.PHONY: setup demo test test-edge tools clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[cpu,dev]'
	touch $@

demo: setup
	$(BIN)/ftx demo

test: setup tools
	$(TOOLS_ENV) $(BIN)/python -m pytest -n 2 --durations=15 tests --ignore=tests/edge
	$(MAKE) test-edge

# The edge install, as a user gets it: a fresh venv, `pip install '.[edge]'`, no TensorFlow. The full venv
# trains and exports the model it serves; the tests run outside the checkout, against the installed package.
test-edge: setup
	rm -rf $(EDGE_VENV) $(EDGE_WORK)
	$(PYTHON) -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/pip install -q --upgrade pip
	$(EDGE_VENV)/bin/pip install -q '.[edge]' 'pytest>=8' 'pytest-xdist>=3.5'
	@if $(EDGE_VENV)/bin/python -c 'import tensorflow' 2>/dev/null; then \
		echo 'the edge install has TensorFlow' >&2; exit 1; fi
	$(BIN)/python tests/edge/make_export.py $(EDGE_WORK)
	cd tests/edge && FTX_EDGE_EXPORT=$(EDGE_WORK) FTX_HOME=$(EDGE_WORK)/home \
		$(CURDIR)/$(EDGE_VENV)/bin/python -m pytest -n 2 -p no:cacheprovider .

tools: $(TOOLS)/.ready

$(TOOLS)/.ready:
	rm -rf $(TOOLS) && mkdir -p $(TOOLS)/debs $(TOOLS)/root
	cd $(TOOLS)/debs && apt-get download -q flatbuffers-compiler libusb-1.0-0
	for deb in $(TOOLS)/debs/*.deb; do dpkg -x "$$deb" $(TOOLS)/root; done
	$(BIN)/pip download -q --no-deps --only-binary :all: -d $(TOOLS)/debs tflite-support==0.4.4
	$(BIN)/pip install -q --no-deps --target $(TOOLS)/tflite-support $(TOOLS)/debs/tflite_support-*.whl
	touch $@

clean:
	rm -rf $(VENV) $(EDGE_VENV) build *.egg-info
