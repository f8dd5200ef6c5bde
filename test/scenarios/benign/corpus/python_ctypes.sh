#!/bin/bash
# python-ctypes: Python calling C through ctypes as bindings to C
# libraries do: libc's qsort with a Python comparison callback (a libffi
# closure, in W+X pages where there is no SELinux), a callback table,
# strlen and a struct array.
set -euo pipefail
/usr/bin/python3 - <<'P'
import ctypes, ctypes.util, random
libc = ctypes.CDLL(ctypes.util.find_library("c"))
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
rng = random.Random(7)
for k in range(30):
    cb = CMP(lambda a, b: a[0] - b[0])
    arr = (ctypes.c_int * 3000)(*[rng.randrange(100000) for _ in range(3000)])
    libc.qsort(arr, len(arr), ctypes.sizeof(ctypes.c_int), cb)
    assert all(arr[i] <= arr[i + 1] for i in range(len(arr) - 1))
# many closures alive at once (a callback table)
table = [CMP(lambda a, b, s=s: (a[0] - b[0]) * s) for s in (1, -1) * 200]
class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_double)]
pts = (Point * 1000)(*[Point(i, -i) for i in range(1000)])
libc.strlen.restype = ctypes.c_size_t
print(len(table), libc.strlen(b"ctypes callback"), sum(p.x + p.y for p in pts))
P
