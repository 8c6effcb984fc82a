#!/usr/bin/env bash
# Generate the Python gRPC stubs of protos/avaforge/v1/*.proto into avaforge/v1/ (never edited by hand,
# not committed: make install and make protos regenerate them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${VENV:-.venv}/bin/python"
rm -rf avaforge/v1
mkdir -p avaforge/v1
"$PY" -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. --pyi_out=. protos/avaforge/v1/*.proto
echo '"""Generated gRPC stubs of protos/avaforge/v1 (scripts/gen_protos.sh); do not edit."""' > avaforge/v1/__init__.py
