#!/usr/bin/env bash
# Regenerate <name>_pb2.py and <name>_pb2.pyi from wa.proto, e2e.proto and signal.proto. Run from anywhere; needs the dev extras
# (grpcio-tools for protoc, mypy-protobuf for the .pyi) installed in the repository's .venv.
#
# The .proto is compiled relative to src/ so its descriptor-pool name is the unique
# "evolink/wire/proto/wa.proto" rather than a bare "wa.proto" another library could also register.
#
# The generated module records the protoc version it came from and refuses at import to run on an
# older protobuf runtime (google.protobuf.runtime_version). grpcio-tools 1.85 ships libprotoc 35.1,
# which writes gencode 7.35.1, so the `protobuf` lower bound in pyproject.toml must be >= 7.35.1.
# If you regenerate with a newer protoc, raise that bound to match the "Protobuf Python Version"
# line at the top of wa_pb2.py.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../../.." && pwd)"
venv="$(cd "$src/.." && pwd)/.venv"
cd "$src"
"$venv/bin/python" -m grpc_tools.protoc --version
"$venv/bin/python" -m grpc_tools.protoc \
  --proto_path=. \
  --plugin=protoc-gen-mypy="$venv/bin/protoc-gen-mypy" \
  --python_out=. \
  --mypy_out=. \
  evolink/wire/proto/wa.proto evolink/wire/proto/e2e.proto evolink/wire/proto/signal.proto
echo "regenerated: $here/{wa,e2e,signal}_pb2.py and .pyi"
