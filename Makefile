# meshsrpc developer commands. Everything runs in .venv, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install lint typecheck gen-check test test-cluster demo bench soak golden clean

install: $(STAMP)

# Editable installs use setuptools' strict mode: a tree of links under build/ that mypy
# (in this repo or in a project of yours using this venv) can follow; the default mode
# hides the packages behind an import hook. A link exists per file, so a file added or
# removed (a source folder changed) installs again. The install lives in build/: after
# deleting build/ by hand, run `touch pyproject.toml && make install`.
SOURCE_DIRS := $(shell find runtime generator templates -type d ! -name __pycache__ 2>/dev/null)
# (The strict mode warns about build/ on every install: expected, so hushed.)
PIP_INSTALL := PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q --disable-pip-version-check
EDITABLE := --config-settings editable_mode=strict -e

$(VENV)/.venv-created:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "meshsrpc needs Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	@touch $@

# Lint, type checks and tests: the generator, the test tools and what the tests run.
$(STAMP): $(VENV)/.venv-created pyproject.toml $(SOURCE_DIRS)
	$(PIP_INSTALL) $(EDITABLE) '.[dev]'
	@touch $(STAMP)

# The demo needs the runtime and, on a machine without Redis, a Redis server: no more.
DEMO_STAMP := $(VENV)/.installed-demo

$(DEMO_STAMP): $(VENV)/.venv-created pyproject.toml $(SOURCE_DIRS)
	$(PIP_INSTALL) $(EDITABLE) '.[demo]'
	@touch $(DEMO_STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy --strict runtime/meshsrpc generator/meshgen

# Everything with direct channels off (no mesh secret), then the mesh, client-service
# and mesh-server suites again with them on: every node of those tests (child processes
# too) reads MESH_DIRECT_SECRET and calls its peers over direct channels.
# (Of the hostile-peer suite, the parts that reach the mesh: the rest is SRPC alone.)
DIRECT_SUITES := tests/mesh tests/client_service tests/mesh_server tests/hostile/mesh \
	tests/hostile/test_mesh_default_timeout.py tests/hostile/test_mesh_lone_surrogates.py \
	tests/hostile/test_mesh_nonfinite_numbers.py tests/hostile/test_registry_undecodable_entries.py

# The suite spends most of its time waiting (timers, sockets, child processes): 4 worker
# processes (pytest-xdist) finish it in under half the time on 2 cores. TEST_WORKERS=0
# runs it in this process, one test after another. Tests marked `serial` (fault runs
# whose node TTLs assume the cores are free) run alone after the parallel pass; exit
# status 5 is "none selected" (a PYTEST_ARGS naming other tests).
TEST_WORKERS ?= 4
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS))

test: lint typecheck gen-check
	MESH_DIRECT_SECRET= $(VENV)/bin/pytest $(XDIST) -m "not cluster_suite and not serial" $(PYTEST_ARGS)
	MESH_DIRECT_SECRET= $(VENV)/bin/pytest -p no:xdist -m "serial and not cluster_suite" $(PYTEST_ARGS) \
		|| test $$? -eq 5
	MESH_DIRECT_SECRET=make-test-direct-secret $(VENV)/bin/pytest $(XDIST) $(DIRECT_SUITES) $(PYTEST_ARGS)

# The mesh, registry, client-service and MeshSrpcServer suites against a local Redis
# Cluster (make test runs the engine/registry contracts and the cluster-only tests on it).
CLUSTER_SUITES := tests/engine tests/registry tests/mesh tests/client_service tests/mesh_server

test-cluster: install
	$(VENV)/bin/pytest --redis-cluster -m "not single_instance" $(CLUSTER_SUITES) $(PYTEST_ARGS)

# Checked-in generated code must match what meshgen makes from the proto today.
gen-check: install
	$(VENV)/bin/meshgen examples/presence/presence.proto -o examples/presence/generated --check

demo: $(DEMO_STAMP)
	$(PY) -m examples.demo

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(VENV)/.venv-created pyproject.toml $(SOURCE_DIRS)
	$(PIP_INSTALL) $(EDITABLE) '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench $(if $(FULL),--full,)

soak: install
	MESHSRPC_SOAK=1 $(VENV)/bin/pytest tests/reliability $(PYTEST_ARGS)

# Regenerate meshgen's golden files (tests/golden/) after a deliberate change to its output.
golden: install
	$(PY) -m meshgen tests/meshgen/protos/srpc_test.proto -o tests/golden/srpc_test
	$(PY) -m meshgen tests/meshgen/protos/lobby.proto -I tests/meshgen/protos/include -o tests/golden/lobby
	$(PY) -m meshgen tests/meshgen/protos/srpc_test.proto -o tests/golden/srpc_test_gateway --gateway
	$(PY) -m meshgen tests/meshgen/protos/lobby.proto -I tests/meshgen/protos/include -o tests/golden/lobby_gateway --gateway

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache
