"""Benchmark of the service backend: start-up, log() cost, end-to-end throughput.

    python bench/backend.py [--steps 200000] [--repeat 3] [--start-method spawn]
                            [--tree PATH [--tree PATH ...]]

Each repetition is a fresh Python process (so start-up is measured cold and no
state carries over), run with ``PYTHONPATH`` set to the source tree measured
(the checkout holding this script, or each ``--tree``), whose ``mpbackend`` is
byte-compiled first; the table shows the median over repetitions of:

* import:      ``import mpbackend``
* setup+init:  ``mpbackend.init()`` including starting the service process
* log p50/p99: time one ``run.log()`` of a dict of 10 floats blocks the caller,
               measured per call with ``perf_counter_ns`` (timer cost included)
* steps/s:     N steps logged, then ``finish()``: N / (loop + finish), with every
               row checked in the store afterwards
* finish:      ``run.finish()`` after the loop
* growth:      how much the training process grew during the loop: peak RSS
               (VmHWM) after the loop minus RSS after ``init()``, in MiB

With ``--tree`` (repeatable) the same measurement runs for each source tree
side by side, the repetitions interleaved (tree A rep 1, tree B rep 1, tree A
rep 2, ...) so that machine noise hits every tree alike; the table then has one
row per tree and N, followed by a second table of the spread of each figure
over the repetitions (min-max), so that run-to-run noise shows. Without
``--tree`` only the first table is printed, with no tree column.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

from trees import cells, compile_tree, describe

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
    loaded_from = mpbackend.__file__
    stored = reader.row_count()
    per_call = sorted(per_call)
    print(json.dumps({
        "import_s": t1 - t0, "init_s": t2 - t1, "loop_s": t4 - t3, "finish_s": t5 - t4,
        "log_p50_us": per_call[steps // 2] / 1e3, "log_p99_us": per_call[int(steps * .99)] / 1e3,
        "steps_per_s": steps / (t5 - t3), "stored": stored, "steps": steps,
        "growth_mib": growth, "file": loaded_from,
    }))
""")


HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout

# The figures of a row: result key, scale, format.
FIGURES = (("import_s", 1e3, ".0f"), ("init_s", 1e3, ".0f"), ("log_p50_us", 1.0, ".2f"),
           ("log_p99_us", 1.0, ".2f"), ("steps_per_s", 1.0, ",.0f"), ("finish_s", 1e3, ".0f"),
           ("growth_mib", 1.0, ".1f"))


def run_once(steps: int, method: str, tree: str = HERE) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(steps), method, tmp],
                             capture_output=True, text=True, timeout=600, cwd=tmp,
                             env={**os.environ, "PYTHONPATH": tree})
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed ({tree}):\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["stored"] != steps:
        raise SystemExit(f"only {result['stored']} of {steps} rows stored ({tree})")
    if os.path.commonpath([os.path.realpath(result["file"]), os.path.realpath(tree)]) \
            != os.path.realpath(tree):
        raise SystemExit(f"the child imported {result['file']}, not the one in {tree}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--start-method", default="spawn")
    parser.add_argument("--tree", action="append", metavar="PATH",
                        help="a source tree to measure (repeatable; default: this checkout); "
                             "with it, one row per tree and a table of the spread")
    args = parser.parse_args()
    trees = [os.path.abspath(t) for t in args.tree] if args.tree else [HERE]
    for tree in trees:
        compile_tree(tree)
    header = (f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
              f"start method {args.start_method}, {args.repeat} fresh processes per row")
    if not args.tree:
        print(header + ", medians\n")
        print("| steps | import ms | setup+init ms | log p50 us | log p99 us | steps/s "
              "| finish ms | growth MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for steps in args.steps:
            runs = [run_once(steps, args.start_method) for _ in range(args.repeat)]
            print(f"| {steps} | {cells(runs, FIGURES)} |", flush=True)
        return

    print(header + " (the trees' repetitions interleaved)")
    for label, tree in zip(args.tree, trees):
        print(f"tree {label}: {describe(tree)}")
    results: dict[int, list[list[dict]]] = {}
    for steps in args.steps:
        results[steps] = per_tree = [[] for _ in trees]
        for rep in range(args.repeat):
            for runs, label, tree in zip(per_tree, args.tree, trees):
                print(f"  steps {steps}, rep {rep + 1}/{args.repeat}: {label}",
                      file=sys.stderr, flush=True)
                runs.append(run_once(steps, args.start_method, tree))
    columns = ("| tree | steps | import ms | setup+init ms | log p50 us | log p99 us | steps/s "
               "| finish ms | growth MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for title, spread in (("medians", False),
                          (f"spread: min-max over the {args.repeat} repetitions", True)):
        print(f"\n{title}\n\n{columns}")
        for steps in args.steps:
            for label, runs in zip(args.tree, results[steps]):
                print(f"| {label} | {steps} | {cells(runs, FIGURES, spread)} |")


if __name__ == "__main__":
    main()
