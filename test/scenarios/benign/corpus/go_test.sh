#!/bin/bash
# go_test: a test suite: go vet and go test (with a short benchmark) of a
# small package, with a test that changes every run (no cached result).
set -euo pipefail
d=$(mktemp -d /tmp/vigil-gotest-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/gomod/." "$d"
cd "$d"
printf 'package stats\n\nimport "testing"\n\nfunc TestRun%s(t *testing.T) {\n\tif Of([]float64{%s}).N != 1 {\n\t\tt.Fatal("N")\n\t}\n}\n' "$RANDOM" "$RANDOM" > stats/run_test.go
export GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
go vet ./...
go test -count=1 -bench . -benchtime 100ms ./...
