"""Benchmark of the service backend: start-up, log() cost, end-to-end throughput.

    python bench/backend.py [--steps 200000] [--repeat 3] [--start-method spawn]

Each repetition is a fresh Python process (so start-up is measured cold and no
state carries over); the table shows the median over repetitions of:

* import:      ``import mpbackend``
* setup+init:  ``mpbackend.init()`` including starting the service process
* log p50/p99: time one ``run.log()`` of a dict of 10 floats blocks the caller,
               measured per call with ``perf_counter_ns`` (timer cost included)
* steps/s:     N steps logged, then ``finish()``: N / (loop + finish), with every
               row checked in the store afterwards
* finish:      ``run.finish()`` after the loop
* growth:      how much the training process grew during the loop: peak RSS
               (VmHWM) after the loop minus RSS after ``init()``, in MiB
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent("""
    import array, json, sys, time

    def rss(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        return 0.0

    t0 = time.perf_counter()
    import mpbackend
    t1 = time.perf_counter()
    steps, method, outdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    run = mpbackend.init(project="bench", dir=outdir, settings={"start_method": method})
    t2 = time.perf_counter()
    pc = time.perf_counter_ns
    per_call = array.array("q", [0]) * steps  # allocated up front: not counted in growth
    row = {f"metric_{i}": 0.0 for i in range(10)}
    base = rss("VmRSS:")
    t3 = time.perf_counter()
    for step in range(steps):
        data = {k: step * 0.001 + i for i, k in enumerate(row)}
        a = pc()
        run.log(data)
        per_call[step] = pc() - a
    t4 = time.perf_counter()
    growth = rss("VmHWM:") - base
    run.finish()
    t5 = time.perf_counter()
    reader = mpbackend.RunReader(run.dir)
    stored = reader.row_count()
    per_call = sorted(per_call)
    print(json.dumps({
        "import_s": t1 - t0, "init_s": t2 - t1, "loop_s": t4 - t3, "finish_s": t5 - t4,
        "log_p50_us": per_call[steps // 2] / 1e3, "log_p99_us": per_call[int(steps * .99)] / 1e3,
        "steps_per_s": steps / (t5 - t3), "stored": stored, "steps": steps,
        "growth_mib": growth,
    }))
""")


def run_once(steps: int, method: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(steps), method, tmp],
                             capture_output=True, text=True, timeout=600, cwd=tmp,
                             env={**os.environ, "PYTHONPATH": os.path.dirname(
                                 os.path.dirname(os.path.abspath(__file__)))})
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["stored"] != steps:
        raise SystemExit(f"only {result['stored']} of {steps} rows stored")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--start-method", default="spawn")
    args = parser.parse_args()
    # As pip does for an installed package (a checkout may run without .pyc files).
    compileall.compile_dir(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "mpbackend"), quiet=1)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"start method {args.start_method}, {args.repeat} fresh processes per row, medians\n")
    print("| steps | import ms | setup+init ms | log p50 us | log p99 us | steps/s "
          "| finish ms | growth MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        runs = [run_once(steps, args.start_method) for _ in range(args.repeat)]

        def med(key: str, scale: float = 1.0, runs: list = runs) -> float:
            return statistics.median(r[key] for r in runs) * scale

        print(f"| {steps} | {med('import_s', 1e3):.0f} | {med('init_s', 1e3):.0f} "
              f"| {med('log_p50_us'):.2f} | {med('log_p99_us'):.2f} "
              f"| {med('steps_per_s'):,.0f} | {med('finish_s', 1e3):.0f} "
              f"| {med('growth_mib'):.1f} |", flush=True)


if __name__ == "__main__":
    main()
