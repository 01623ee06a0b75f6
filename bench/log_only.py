"""The cost of ``run.log()`` alone: nothing else competes for the interpreter.

    PYTHONPATH=<tree> python -B bench/log_only.py [--calls 50000] [--repeat 5]

The service process is stopped (SIGSTOP) right after ``init()`` and the buffer
is 1 GiB, so no record reaches the service and the sender thread soon blocks on
the full pipe (outside the GIL): what is timed is ``log()``'s own work, its
checks, the row's copy and the lock-free append. Prints the best and the median
nanoseconds per call over ``--repeat`` rounds; the service is killed at the end.
Run it once per tree, a few times interleaved, to compare two source trees.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time

import mpbackend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    run = mpbackend.init(project="log-only", dir=tempfile.mkdtemp(),
                         settings={"system_interval": 0, "buffer_bytes": 1 << 30,
                                   "quiet": True})
    service = mpbackend.setup().manager.service.pid
    os.kill(service, signal.SIGSTOP)
    try:
        time.sleep(0.2)
        rows = [{f"m{i}": s * 0.001 + i for i in range(10)} for s in range(args.calls)]
        clock = time.perf_counter_ns
        rounds = []
        for _ in range(args.repeat):
            started = clock()
            for row in rows:
                run.log(row)
            rounds.append((clock() - started) / len(rows))
        rounds.sort()
        tree = os.path.dirname(os.path.dirname(os.path.abspath(mpbackend.__file__)))
        print(f"{tree}: log() {rounds[0]:.0f} ns best, {rounds[len(rounds) // 2]:.0f} ns "
              f"median per call ({args.calls} calls x {args.repeat})")
    finally:
        os.kill(service, signal.SIGKILL)
        os._exit(0)  # the buffer holds what never reached the stopped service: no exit path


if __name__ == "__main__":
    main()
