# session mesh — everything a newcomer needs runs from here; each target installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
SOAK_ARGS ?=

.PHONY: all venv proto proto-check lint typecheck test test-fast demo bench soak clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@# An editable install leaves mesh uncompiled; under PYTHONDONTWRITEBYTECODE=1 every meshctl run would
	@# compile every module it imports again (a wheel install compiles at install time).
	$(PY) -m compileall -q mesh > /dev/null
	touch $(STAMP)

venv: $(STAMP)

# Regenerate protobuf/gRPC code (committed; never hand-edited).
proto: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. --mypy_out=. protos/mesh/_proto/mesh.proto

# CI: the committed generated code must be what the .proto produces.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp --mypy_out=$$tmp protos/mesh/_proto/mesh.proto && \
	for f in mesh_pb2.py mesh_pb2_grpc.py mesh_pb2.pyi; do \
	  cmp -s $$tmp/mesh/_proto/$$f mesh/_proto/$$f || { echo "generated mesh/_proto/$$f is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "generated code is fresh"

lint: $(STAMP)
	$(VENV)/bin/ruff check mesh tests bench
	$(VENV)/bin/ruff format --check mesh tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy mesh

# The test command (README, .ci/run): generated code fresh, lint, types, then every test.
test: proto-check lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -x $(PYTEST_ARGS)

# Three local nodes, their status, and a live view (Ctrl-C ends it and stops the nodes).
demo: $(STAMP)
	$(PY) -m mesh.demo

# Bytecode first: an installed package has it, and a shell with PYTHONDONTWRITEBYTECODE=1 would otherwise
# compile every mesh module in every timed meshctl process.
bench: $(STAMP)
	$(PY) -m compileall -q mesh > /dev/null
	$(PY) -m bench.run

# Long claims nemesis; `make soak SOAK_ARGS=--churn` runs the churn nemesis (sessions come and go).
soak: $(STAMP)
	$(PY) -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
