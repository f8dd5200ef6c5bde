#!/bin/bash
# javac_jar: javac of three classes, jar, then a word count over 40 files
# with the jar.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-javac-XXXXXX)
trap 'rm -rf "$d"' EXIT
javac -d "$d/classes" "$FIX"/java/src/corpus/*.java
jar cf "$d/corpus.jar" -C "$d/classes" .
java -cp "$d/corpus.jar" corpus.Words "$FIX/data"
