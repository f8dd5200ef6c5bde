#!/bin/bash
# awk_crunch: a CPU-bound awk job: 12 passes of statistics over 60k CSV
# rows held in memory.
set -euo pipefail
awk -F, '{ q[NR] = $3; p[NR] = $4 } END {
	for (pass = 0; pass < 12; pass++) {
		s = 0; ss = 0
		for (i = 1; i <= NR; i++) { v = q[i] * p[i] + pass; s += v; ss += v * v }
		m = s / NR
	}
	printf "mean %.2f sd %.2f\n", m, sqrt(ss / NR - m * m)
}' "$FIX/data/sales.csv"
