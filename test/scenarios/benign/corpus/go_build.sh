#!/bin/bash
# go_build: go build of a small module (a library and a command using
# net/http and encoding/json), with a source file that changes every run
# so that compile and link both happen; then runs the binary.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-gobuild-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/gomod/." "$d"
cd "$d"
printf 'package main\n\nconst runID = "%s-%s"\n\nfunc init() { build = runID }\n' "$$" "$RANDOM" > cmd/report/id.go
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
go build -o report ./cmd/report
./report
