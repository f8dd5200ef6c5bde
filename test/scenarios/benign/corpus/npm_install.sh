#!/bin/bash
# npm_install: npm install (offline) of an application whose dependency
# is a local package, then its tests (node --test through npm test).
set -euo pipefail
d=$(mktemp -d /tmp/vigil-npm-XXXXXX)
trap 'rm -rf "$d"' EXIT
cp -r "$FIX/node/lib-a" "$FIX/node/app" "$d/"
cd "$d/app"
export npm_config_cache="$d/npm-cache" npm_config_update_notifier=false
npm install --offline --no-audit --no-fund --loglevel=error
node index.js
npm test --silent
