#!/bin/bash
# java-gc: a JVM allocating hard for 6 s with 4 parallel GC threads, then
# 4 s under G1 with concurrent marking threads (a batch job's heap churn).
set -euo pipefail
d=$(mktemp -d /tmp/vigil-gc-XXXXXX)
trap 'rm -rf "$d"' EXIT
cat > "$d/Churn.java" <<'J'
import java.util.*;
public class Churn {
	public static void main(String[] a) {
		long ms = Long.parseLong(a[0]), t = System.currentTimeMillis(), n = 0;
		List<int[]> keep = new ArrayList<>();
		while (System.currentTimeMillis() - t < ms) {
			int[] x = new int[1000 + (int) (n % 5000)];
			x[0] = (int) n;
			if (n % 50 == 0) keep.add(x);
			if (keep.size() > 2000) keep.clear(); // at most about 30 MB live
			n++;
		}
		System.out.println(n + " " + keep.size());
	}
}
J
java -XX:+UseParallelGC -XX:ParallelGCThreads=4 -Xmx256m "$d/Churn.java" 6000
java -XX:+UseG1GC -XX:ConcGCThreads=2 -XX:ParallelGCThreads=4 -Xmx128m "$d/Churn.java" 4000
