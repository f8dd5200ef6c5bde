#!/bin/bash
# cargo_build: cargo build --offline --release of a crate with no
# dependencies, then runs it.
set -euo pipefail
PATH=$PATH:$HOME/.cargo/bin
d=$(mktemp -d /tmp/vigil-cargo-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/rust/." "$d"
cd "$d"
CARGO_TARGET_DIR="$d/target" cargo build -q --offline --release
./target/release/corpus
