"""Memory over a long run: how much the training process and the service grow as the
steps go by, logging as fast as ``log()`` goes.

    python bench/memory.py [--steps 10000000] [--every 1000000] [--tree PATH ...]

For each source tree (default: this checkout), one fresh process logs ``--steps``
rows of 10 floats with the default settings and samples, every ``--every`` steps,
its own RSS and the service's (psutil, from the logging thread). Printed per
tree: the training process's growth over its RSS after ``init()`` (the largest
sample), the service's largest RSS, and both at the first and the last sample,
so a growth per step shows as a difference between them; then steps/s.
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
    steps, every, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    run = mpbackend.init(project="bench", dir=where)
    me = psutil.Process()
    service = me.children(recursive=True)[-1]
    rss = lambda p: p.memory_info().rss / 2**20
    start, marks = rss(me), []
    names = [f"metric_{i}" for i in range(10)]
    t = time.perf_counter()
    for s in range(steps):
        run.log({n: s * 0.001 + i for i, n in enumerate(names)})
        if s % every == every - 1:
            marks.append((rss(me), rss(service)))
    run.finish()
    took = time.perf_counter() - t
    print(json.dumps({"start": start, "marks": marks, "rate": steps / took}))
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--every", type=int, default=1_000_000)
    parser.add_argument("--tree", action="append", metavar="PATH")
    args = parser.parse_args()
    print(f"{args.steps:,} steps of 10 floats, RSS sampled every {args.every:,} steps\n")
    print("| tree | training process growth MiB (max) | at first / last sample | "
          "service RSS MiB (max) | at first / last sample | steps/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for tree in args.tree or [HERE]:
        where = tempfile.mkdtemp(prefix="bench-memory-")
        try:
            done = subprocess.run([sys.executable, "-c", CHILD, str(args.steps),
                                   str(args.every), where],
                                  env={**os.environ, "PYTHONPATH": os.path.abspath(tree),
                                       "MPBACKEND_SILENT": "1"},
                                  capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            res = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(where, ignore_errors=True)
        users = [u - res["start"] for u, _ in res["marks"]]
        services = [s for _, s in res["marks"]]
        print(f"| {os.path.basename(os.path.abspath(tree))} | {max(users):.1f} | "
              f"{users[0]:.1f} / {users[-1]:.1f} | {max(services):.1f} | "
              f"{services[0]:.1f} / {services[-1]:.1f} | {res['rate']:,.0f} |")


if __name__ == "__main__":
    main()
