#!/bin/bash
# python_crunch: a Python data job on every core for 40 s, no network: a
# process per core hashes and sums a synthetic data set (a checksum and
# statistics pass), results gathered at the end (multiprocessing.Pool).
set -euo pipefail
/usr/bin/python3 - <<'P'
import hashlib
import multiprocessing as mp
import os
import time


def crunch(args):
    part, seconds = args
    end, n, acc, total = time.monotonic() + seconds, 0, hashlib.sha256(), 0.0
    while time.monotonic() < end:
        for i in range(20000):
            row = (part * 1_000_003 + n * 20000 + i).to_bytes(8, "little")
            acc.update(hashlib.sha256(row).digest())
            total += (i * 2654435761 % 1000) / 1000.0
        n += 1
    return part, n, acc.hexdigest()[:16], total


if __name__ == "__main__":
    cores = os.cpu_count() or 1
    with mp.Pool(cores) as pool:
        for part, n, digest, total in pool.map(crunch, [(p, 40) for p in range(cores)]):
            print(part, n, digest, round(total))
P
