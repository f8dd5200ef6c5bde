# py_miner: a cryptocurrency miner written in Python, as the ones dropped
# into compromised notebooks and CI runners are: it logs in to a pool over
# one TCP connection (JSON lines, stratum-like), hashes the pool's job with
# sha256 in one process per core and submits the shares it finds, for
# MINER_SECONDS seconds. The pool is the harness's listener on loopback
# (POOL=127.0.0.1:PORT, not a stratum port): nothing leaves the machine.
import hashlib
import json
import multiprocessing as mp
import os
import socket
import threading
import time


def work(blob, seq, target, shares, stop, wid):
    """Hash blob || nonce until stop, reporting nonces under target."""
    cur, prefix = -1, b""
    nonce = wid << 40
    while not stop.value:
        if seq.value != cur:  # a new job: shared memory, no syscall
            cur, prefix = seq.value, bytes(blob[:]).rstrip(b"\0")
        for _ in range(50000):
            nonce += 1
            h = hashlib.sha256(hashlib.sha256(prefix + nonce.to_bytes(8, "little")).digest()).digest()
            if int.from_bytes(h[:4], "little") < target:
                shares.put((cur, nonce, h.hex()))


def main():
    host, port = os.environ["POOL"].rsplit(":", 1)
    seconds = float(os.environ.get("MINER_SECONDS", "40"))
    s = socket.create_connection((host, int(port)))
    f = s.makefile("rwb")
    f.write(json.dumps({"id": 1, "method": "login", "params": {"login": "wallet", "pass": "x", "agent": "pyminer/1.0"}}).encode() + b"\n")
    f.flush()
    blob = mp.Array("c", 256)
    seq = mp.Value("l", 0)
    stop = mp.Value("b", 0)
    shares = mp.Queue()
    jobs = {}

    def reader():
        for line in f:
            msg = json.loads(line)
            job = msg.get("params") if msg.get("method") == "job" else (msg.get("result") or {}).get("job")
            if isinstance(job, dict):
                jobs[job["job_id"]] = job
                blob.value = bytes.fromhex(job["blob"])
                with seq.get_lock():
                    seq.value += 1

    threading.Thread(target=reader, daemon=True).start()
    target = 2**32 // 3_000_000  # about one share in 3 M hashes
    procs = [mp.Process(target=work, args=(blob, seq, target, shares, stop, i)) for i in range(os.cpu_count() or 1)]
    for p in procs:
        p.start()
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        try:
            job, nonce, h = shares.get(timeout=max(0.1, min(5, end - time.monotonic())))
        except Exception:
            continue
        n += 1
        f.write(json.dumps({"id": 2 + n, "method": "submit", "params": {"job_id": str(job), "nonce": "%016x" % nonce, "result": h}}).encode() + b"\n")
        f.flush()
    stop.value = 1
    for p in procs:
        p.join()
    s.close()
    print("shares submitted:", n)


if __name__ == "__main__":
    main()
