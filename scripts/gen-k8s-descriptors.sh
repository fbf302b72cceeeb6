#!/usr/bin/env bash
# Regenerates src/sim/proto/k8s.binpb, the protobuf descriptors of the built-in kinds the
# simulated API server decodes (kubectl sends their request bodies as protobuf), and
# src/sim/proto/k8s-lists.json, the list/map merge markers of the same types (server-side
# apply and managedFields follow them).
#
# Usage: scripts/gen-k8s-descriptors.sh <kubernetes/api checkout> <kubernetes/apimachinery checkout>
# Needs: pip install grpcio-tools (a bundled protoc).
set -euo pipefail
api=$(cd "$1" && pwd)
machinery=$(cd "$2" && pwd)
out=$(cd "$(dirname "$0")/.." && pwd)/src/sim/proto/k8s.binpb
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/k8s.io"
ln -s "$api" "$tree/k8s.io/api"
ln -s "$machinery" "$tree/k8s.io/apimachinery"
groups="core/v1 apps/v1 batch/v1 coordination/v1 events/v1 storage/v1 rbac/v1 policy/v1
  authentication/v1 authorization/v1 autoscaling/v1"
files=()
for g in $groups; do files+=("k8s.io/api/$g/generated.proto"); done
python3 -m grpc_tools.protoc -I "$tree" --include_imports --descriptor_set_out="$out" "${files[@]}"
sources=()
for f in "${files[@]}" k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto; do sources+=("$tree/$f"); done
python3 "$(dirname "$0")/k8s-list-types.py" "$(dirname "$out")/k8s-lists.json" "${sources[@]}"
echo "wrote $out ($(wc -c <"$out") bytes) from api $(git -C "$api" rev-parse --short HEAD), apimachinery $(git -C "$machinery" rev-parse --short HEAD)"
