#!/usr/bin/env bash
# update.sh regenerates the plain manifests in this directory from the Helm
# chart (deploy/helm/vigil, default values), with helm's Go library: no helm
# binary needed. Run it after changing the chart; `go test ./deploy` fails
# while the files here differ from a fresh render.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
go run ./deploy/cmd/render-manifests
