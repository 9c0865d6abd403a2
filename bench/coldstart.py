#!/usr/bin/env python3
"""Cold start of nur-worker: from process start to the first answered connection.

Three ways to get native code for the same module, each measured RUNS times
(median, min, max):
  compile   no cache: Cranelift compiles the module at start
  cache     --cache-dir with an entry from an earlier start
  artifact  --artifact made by `nur-worker compile`, its sha256 pinned

Usage: bench/coldstart.py [MODULE] (default examples/build/markdown.wasm);
RUNS=N to change the number of runs. Needs target/release/nur-worker.
Prints a markdown table and writes bench/results/coldstart.json.
"""
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = "target/release/nur-worker"
MODULE = sys.argv[1] if len(sys.argv) > 1 else "examples/build/markdown.wasm"
RUNS = int(os.environ.get("RUNS", "7"))
BODY = b"# cold start\n\nhttps://example.com\n"
REQUEST = b"POST / HTTP/1.1\r\nhost: bench\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answered(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(REQUEST)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            return data.startswith(b"HTTP/1.1 200") or len(data) > 0
    except OSError:
        return False


def first_answer(args):
    """Seconds from spawning the worker to its first answered connection."""
    port, admin = free_port(), free_port()
    started = time.perf_counter()
    worker = subprocess.Popen(
        [BIN, "serve", "--module", MODULE, "--listen", f"127.0.0.1:{port}",
         "--admin-listen", f"127.0.0.1:{admin}", *args],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 120
        while not answered(port):
            if time.perf_counter() > deadline or worker.poll() is not None:
                raise RuntimeError(f"worker did not answer ({args})")
            time.sleep(0.0005)
        return time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait()


def measure(args):
    times = [first_answer(args) * 1000 for _ in range(RUNS)]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def main():
    size = os.path.getsize(MODULE)
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        artifact = os.path.join(tmp, "module.artifact")
        subprocess.run([BIN, "compile", MODULE, "-o", artifact], check=True, stdout=subprocess.DEVNULL)
        digest = hashlib.sha256(open(artifact, "rb").read()).hexdigest()
        first_answer(["--cache-dir", cache])  # fills the cache
        results = {
            "compile": measure([]),
            "cache": measure(["--cache-dir", cache]),
            "artifact": measure(["--artifact", artifact, "--artifact-sha256", digest]),
        }
    print(f"Cold start, {MODULE} ({size / 1e6:.2f} MB), {RUNS} runs each: process start to first answered connection")
    print()
    print("| native code from | median | min | max |")
    print("|---|---:|---:|---:|")
    for mode, r in results.items():
        print(f"| {mode} | {r['median_ms']:.1f} ms | {r['min_ms']:.1f} ms | {r['max_ms']:.1f} ms |")
    os.makedirs("bench/results", exist_ok=True)
    with open("bench/results/coldstart.json", "w") as out:
        json.dump({"module": MODULE, "bytes": size, "runs": RUNS, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
