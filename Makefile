# DAGSTER_HOME is the project root for every entry point, so the UI, the CLI and the
# daemon share one instance (dagster.yaml keeps its storage under .data/).
SHELL := /bin/bash
export DAGSTER_HOME := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_REPO := stdlib-logging
DEMO_QUERY ?= rotate the log file when it grows too large

.PHONY: install demo test test-fast dev serve validate bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Index a real repository (the logging package of this interpreter's standard library)
# end to end, offline, with the local embedder; then search it.
demo: install
	$(BIN)/repo-index add $(DEMO_REPO) "$$($(BIN)/python -c 'import logging, os; print(os.path.dirname(logging.__file__))')" --replace
	$(BIN)/repo-index index $(DEMO_REPO)
	$(BIN)/repo-index search "$(DEMO_QUERY)" --repo $(DEMO_REPO) -k 5

# One worker per CPU; each test file stays on one worker, so a module's servers start once.
PYTEST := $(BIN)/python -m pytest -q -ra -n auto --dist loadfile

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

# Webserver and one daemon on 127.0.0.1:3000, sharing the project's instance.
dev: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The search server (JSON API and MCP) on http://127.0.0.1:8765; next to `make dev` in a second terminal.
serve: install
	$(BIN)/repo-index serve

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# The quick benchmarks (a few minutes each; retrieval 3-6 with the local model, serving
# about 5, most of it indexing its ten repositories; ingest under 1, plus 4 the first time to
# embed its 5,000 chunks); the
# large pipeline corpus is `$(BIN)/python bench/pipeline.py` (about 25 minutes here), the
# 100,000-chunk query times `bench/retrieval.py --latency` and the full ingest table
# `bench/ingest.py --dims 384,1536` (10 minutes, 14 more the first time). Figures in bench/results/.
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/chunking.py
	$(BIN)/python bench/embedding.py
	$(BIN)/python bench/redaction.py
	$(BIN)/python bench/pipeline.py --corpus stdlib
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/ingest.py --quick
	$(BIN)/python bench/small_reindex.py --rounds 3

clean:
	rm -rf .data
