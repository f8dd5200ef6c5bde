#!/bin/bash
# python_tests: a test suite: python3 -m unittest, then byte-compiling
# the standard library's json package into a scratch directory.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-pytest-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/py/tests" "$d/tests"
cd "$d"
/usr/bin/python3 -m unittest discover -q -s tests 2>&1 | tail -1
cp -r "$(/usr/bin/python3 -c 'import json, os; print(os.path.dirname(json.__file__))')" "$d/json"
/usr/bin/python3 -m compileall -q "$d/json"
