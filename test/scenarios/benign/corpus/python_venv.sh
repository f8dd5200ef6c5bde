#!/bin/bash
# python_venv: python3 -m venv (with pip), then the venv's interpreter
# and pip list.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-venv-XXXXXX)
trap 'rm -rf "$d"' EXIT
/usr/bin/python3 -m venv "$d/venv"
"$d/venv/bin/python" -c 'import sys; print(sys.prefix)'
"$d/venv/bin/pip" list --disable-pip-version-check >/dev/null
