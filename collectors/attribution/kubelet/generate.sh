#!/usr/bin/env bash
# Regenerate the Python stubs of podresources_v1.proto (needs grpcio-tools, a dev dependency).
set -euo pipefail
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. podresources_v1.proto
# protoc writes a top-level import; the stubs live in this package
sed -i 's/^import podresources_v1_pb2 as/from fleetmeter.collectors.attribution.kubelet import podresources_v1_pb2 as/' podresources_v1_pb2_grpc.py
