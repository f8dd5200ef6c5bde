#!/bin/bash
# numpy-blas: NumPy on OpenBLAS threads: matrix products, a solve, an
# SVD and FFTs for 8 s (a data-science notebook's cell).
set -euo pipefail
/usr/bin/python3 - <<'P'
import time
import numpy as np
rng = np.random.default_rng(1)
a = rng.random((600, 600))
t, n = time.time(), 0
while time.time() - t < 8:
    b = a @ a.T
    x = np.linalg.solve(b + 600 * np.eye(600), a[:, 0])
    n += 1
u, s, vt = np.linalg.svd(a[:300, :300])
f = np.fft.rfft(rng.random(1 << 20))
print(n, round(float(x[0]), 6), round(float(s[0]), 3), f.shape[0])
P
