#!/bin/bash
# java_service: a JVM HTTP service (com.sun.net.httpserver) on loopback
# answering 200 requests of its own client.
set -euo pipefail
java -cp "$FIX/java/classes" corpus.Service
