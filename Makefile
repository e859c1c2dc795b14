# meshsrpc developer commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install lint typecheck gen-check test demo bench soak golden clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "meshsrpc needs Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[gen,dev]'
	@touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy --strict runtime/meshsrpc generator/meshgen

# Everything with direct channels off (no mesh secret), then the mesh, client-service
# and mesh-server suites again with them on: every node of those tests (child processes
# too) reads MESH_DIRECT_SECRET and calls its peers over direct channels.
DIRECT_SUITES := tests/mesh tests/client_service tests/mesh_server tests/hostile

test: lint typecheck gen-check
	MESH_DIRECT_SECRET= $(VENV)/bin/pytest $(PYTEST_ARGS)
	MESH_DIRECT_SECRET=make-test-direct-secret $(VENV)/bin/pytest $(DIRECT_SUITES) $(PYTEST_ARGS)

# Checked-in generated code must match what meshgen makes from the proto today.
gen-check: install
	$(VENV)/bin/meshgen examples/presence/presence.proto -o examples/presence/generated --check

demo: install
	$(PY) -m examples.demo

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -e '.[gen,dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench $(if $(FULL),--full,)

soak: install
	MESHSRPC_SOAK=1 $(VENV)/bin/pytest tests/reliability $(PYTEST_ARGS)

# Regenerate meshgen's golden files (tests/golden/) after a deliberate change to its output.
golden: install
	$(PY) -m meshgen tests/meshgen/protos/srpc_test.proto -o tests/golden/srpc_test
	$(PY) -m meshgen tests/meshgen/protos/lobby.proto -I tests/meshgen/protos/include -o tests/golden/lobby

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache
