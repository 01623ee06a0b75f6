"""How the cost grows: rows/s and memory as the steps, the keys per row and the runs
open at once grow, one fresh process per point.

    python bench/growth.py [--quick]

Three series, each point one fresh process logging as fast as ``log()`` goes:

* N (steps of 10 floats, one run): 10^4, 10^5, 10^6, 10^7;
* keys per row (one run, 10^6 values in all, so rows = 10^6 / keys): 1, 10, 100, 1,000;
* runs open at once (10 floats a row, 10^5 rows in all, round-robin): 1, 10, 100.

Per point: rows/s and values/s over the loop plus ``finish()``, ``log()`` p50 and p99
(``perf_counter_ns`` around each call), the training process's growth (RSS after the
loop minus after ``init()``) and the service's RSS after the loop. ``--quick`` stops N
at 10^6.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import json, sys, time, psutil, mpbackend
    rows, keys, nruns, where = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    runs = [mpbackend.init(project="g", dir=where, reinit="create_new") for _ in range(nruns)]
    me = psutil.Process()
    service = me.children(recursive=True)[-1]
    rss = lambda p: p.memory_info().rss / 2**20
    names = [f"k{i}" for i in range(keys)]
    start = rss(me)
    clock = time.perf_counter_ns
    took = []
    every = max(1, rows // 20000)  # time about 20,000 calls, whatever the rows
    t = time.perf_counter()
    for s in range(rows // nruns):
        for run in runs:
            row = {n: s + i * 0.5 for i, n in enumerate(names)}
            if s % every == 0:
                a = clock()
                run.log(row)
                took.append(clock() - a)
            else:
                run.log(row)
    grown, service_rss = rss(me) - start, rss(service)
    for run in runs:
        run.finish()
    elapsed = time.perf_counter() - t
    took.sort()
    print(json.dumps({"rate": rows / elapsed, "p50": took[len(took) // 2] / 1e3,
                      "p99": took[int(len(took) * 0.99)] / 1e3, "grown": grown,
                      "service": service_rss}))
""")


def point(rows: int, keys: int, runs: int) -> dict:
    where = tempfile.mkdtemp(prefix="bench-growth-")
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(keys), str(runs),
                               where], env={**os.environ, "PYTHONPATH": HERE,
                                            "MPBACKEND_SILENT": "1"},
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    series = [("N", n, 10, 1) for n in (10**4, 10**5, 10**6) + (() if args.quick else (10**7,))]
    series += [("keys", 10**6 // k, k, 1) for k in (1, 10, 100, 1000)]
    series += [("runs", 10**5, 10, r) for r in (1, 10, 100)]
    print("| series | rows | keys | runs | rows/s | values/s | log p50 µs | log p99 µs | "
          "training growth MiB | service RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows, keys, runs in series:
        r = point(rows, keys, runs)
        print(f"| {name} | {rows:,} | {keys:,} | {runs} | {r['rate']:,.0f} | "
              f"{r['rate'] * keys:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['grown']:.1f} | {r['service']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
