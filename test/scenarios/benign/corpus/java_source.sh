#!/bin/bash
# java_source: a single-file Java program run from source (java File.java
# compiles it in memory).
set -euo pipefail
d=$(mktemp -d /tmp/vigil-javasrc-XXXXXX)
trap 'rm -rf "$d"' EXIT
cat > "$d/Hello.java" <<'J'
public class Hello {
	public static void main(String[] a) {
		StringBuilder b = new StringBuilder();
		for (int i = 0; i < 100000; i++) b.append(i % 10);
		System.out.println("hello " + b.length());
	}
}
J
java "$d/Hello.java"
