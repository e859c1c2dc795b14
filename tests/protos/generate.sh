#!/bin/sh
# Regenerate the betterproto2 classes of the SRPC test schema into tests/generated/.
set -eu
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
# The betterproto2 plugin formats its output with `ruff` found on PATH.
PATH="$(pwd)/$VENV/bin:$PATH"
export PATH
"$VENV/bin/python" -m grpc_tools.protoc \
  -I tests/protos \
  --plugin=protoc-gen-python_betterproto2="$VENV/bin/protoc-gen-python_betterproto2" \
  --python_betterproto2_out=tests/generated \
  tests/protos/srpc_test.proto tests/protos/shapes.proto
