#!/bin/bash
# pip_install: pip installs a package from local files (no index, no
# network) into a target directory, which the interpreter then imports.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-pip-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/py/pkg" "$d/pkg"
"$FIX/py/venv/bin/pip" install -q --disable-pip-version-check --no-index --no-build-isolation --target "$d/site" "$d/pkg"
PYTHONPATH="$d/site" "$FIX/py/venv/bin/python" -c 'import corpusstats; print(corpusstats.mean([1, 2, 3]))'
