#!/bin/bash
# pip_install: pip installs a package from a local wheel (no index, no
# network) into a target directory, which the venv's interpreter then
# imports.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-pip-XXXXXX)
trap 'rm -rf "$d"' EXIT
"$FIX/py/venv/bin/pip" install -q --disable-pip-version-check --no-index --target "$d/site" "$FIX/py/corpusstats-1.0-py3-none-any.whl"
PYTHONPATH="$d/site" "$FIX/py/venv/bin/python" -c 'import corpusstats; print(corpusstats.mean([1, 2, 3]))'
