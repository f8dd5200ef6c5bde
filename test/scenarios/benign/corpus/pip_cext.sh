#!/bin/bash
# pip-cext: pip builds and installs a local package with a C extension
# (setuptools runs gcc) into a target directory, with no index, then the
# extension is imported and used.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-cext-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/cext" "$d/src"
/usr/bin/python3 -m pip install -q --no-index --no-build-isolation --disable-pip-version-check --target "$d/lib" "$d/src" 2>&1 | grep -v '^WARNING' || true
PYTHONPATH=$d/lib /usr/bin/python3 -c 'import fastsum; print(fastsum.total(1000000))'
