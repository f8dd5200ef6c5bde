#!/bin/bash
# node_server: a Node.js HTTP server on loopback answering 300 requests of
# its own client.
set -euo pipefail
node "$FIX/node/server.js"
