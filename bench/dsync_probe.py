#!/usr/bin/env python3
"""bench/dsync_probe.py — how fast this machine's disk makes small appends durable.

usage: bench/dsync_probe.py [DIR] (default /tmp; use the spool's file system)

Each of 1, 2 and 4 threads appends 1,000 blocks of 4 KiB and of 64 KiB to its own
preallocated file with pwritev(RWF_DSYNC), the call ringmail's group commit makes once per
batch. Then 1, 2 and 3 threads write 4 KiB blocks with RWF_DSYNC at interleaved offsets of
one zero-filled file (a spool segment with 1, 2 or 3 batches in flight at once). Prints the
total syncs per second and the median latency. The files are removed.
"""
import os
import sys
import threading
import time


def worker(path, count, size, medians, idx):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, count * size)
        os.fsync(fd)
        block = b"x" * size
        latencies = []
        for i in range(count):
            start = time.perf_counter()
            os.pwritev(fd, [block], i * size, os.RWF_DSYNC)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    medians[idx] = latencies[len(latencies) // 2]


def run_all(workers):
    """Starts every thread, waits for all; returns the seconds they took together."""
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def same_file(directory, threads, count=2000, size=4096):
    """threads writers, each to every threads-th block of one zero-filled file."""
    path = os.path.join(directory, f"dsync_probe.{os.getpid()}.same")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    latencies = []
    try:
        os.write(fd, bytes(threads * count * size))  # written zeros, like a zero-filled segment
        os.fsync(fd)

        def writer(k):
            block = b"x" * size
            for i in range(count):
                start = time.perf_counter()
                os.pwritev(fd, [block], (i * threads + k) * size, os.RWF_DSYNC)
                latencies.append(time.perf_counter() - start)

        elapsed = run_all([threading.Thread(target=writer, args=(k,)) for k in range(threads)])
    finally:
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    print(f"one file, {threads} in flight, block=4 KiB: {threads * count / elapsed:.0f} syncs/s"
          f" in all, median {1e6 * latencies[len(latencies) // 2]:.0f} us")


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    count = 1000
    for threads in (1, 2, 4):
        for size in (4096, 65536):
            medians = [0.0] * threads
            workers = [threading.Thread(target=worker, args=(
                os.path.join(directory, f"dsync_probe.{os.getpid()}.{i}"), count, size,
                medians, i)) for i in range(threads)]
            elapsed = run_all(workers)
            print(f"threads={threads} block={size // 1024} KiB: "
                  f"{threads * count / elapsed:.0f} syncs/s in all, "
                  f"median {1e6 * sorted(medians)[threads // 2]:.0f} us")
    for threads in (1, 2, 3):
        same_file(directory, threads)


if __name__ == "__main__":
    main()
