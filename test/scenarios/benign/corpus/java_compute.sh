#!/bin/bash
# java_compute: a JVM data job: two worker threads counting primes for a
# few seconds (JIT compiled).
set -euo pipefail
java -cp "$FIX/java/classes" corpus.Compute
