#!/bin/bash
# npm pack of a local library, npm install of the tarball, npm ci (offline), npm run
set -eu
d=$(mktemp -d /tmp/vigil-npm-XXXXXX); trap 'rm -rf "$d"' EXIT; export npm_config_cache="$d/cache" npm_config_update_notifier=false npm_config_audit=false npm_config_fund=false
mkdir -p "$d/lib" "$d/app"; cd "$d/lib"
printf '{"name":"corpuslib","version":"1.0.0","main":"i.js","bin":{"corpus-sum":"cli.js"}}' > package.json
echo 'module.exports=(a)=>a.reduce((x,y)=>x+y,0)' > i.js; printf '#!/usr/bin/env node\nconsole.log(require("./i.js")([1,2,3]))\n' > cli.js; chmod +x cli.js
npm pack --silent >/dev/null
cd "$d/app"; cat > package.json <<'J'
{"name":"app","version":"1.0.0","scripts":{"start":"node -e \"console.log(require('corpuslib')([4,5]))\"","sum":"corpus-sum"}}
J
npm install --offline --no-audit "$d/lib/corpuslib-1.0.0.tgz" >/dev/null
rm -rf node_modules; npm ci --offline --silent >/dev/null; npm start --silent >/dev/null; npm run --silent sum >/dev/null; npx --offline corpus-sum >/dev/null; npm ls >/dev/null
