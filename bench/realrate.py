"""Logging at a real training rate: the CPU logging takes per step, and the training
loop's slowdown on one core, mpbackend beside trackio and wandb in the same run.

    python bench/realrate.py [--steps 2000] [--keys 20] [--step-ms 2] [--repeat 3]
                             [--trackio-python PATH] [--wandb-python PATH]
                             [--tree PATH ...]

A step is a fixed amount of pure-Python arithmetic (calibrated once, in this
process, to ``--step-ms`` of CPU) followed by one ``log()`` of ``--keys`` floats:
the shape of a small model's training loop, without torch (the peers' venv has
none). Each (library, repetition) is a fresh process; the repetitions are
interleaved so that machine noise hits every library alike. Per run:

* logging CPU per step: (user+system CPU of the training process and of every
  process it started, from after ``init()`` to after ``finish()``: the loop and
  the drain, not imports and start-up), less the CPU of the training work
  itself (each step's arithmetic, timed with ``time.thread_time``), less the
  same residue for ``none`` (the loop alone: building the dict, the timer
  calls), divided by the steps. Subtracting the measured work rather than a
  whole baseline run keeps the machine's run-to-run noise in the work (some %)
  out of a figure of some µs. Children are read
  with psutil before they exit (mpbackend's and wandb's service processes live
  until the interpreter ends), and the reaped ones from ``os.times()``.
* loop slowdown on one core: under ``taskset -c 0`` (the library's background
  process or threads share the training core), the loop's wall time per second
  of its work's CPU, over the same for ``none``, minus 1. (Dividing by the work's
  own CPU time cancels the machine's run-to-run changes of speed.)
* wake-ups: voluntary context switches of the training process and its children
  per second of loop (how often something slept and was woken).

mpbackend runs under this interpreter (``PYTHONPATH`` = the tree); trackio and
wandb (offline) under their own interpreters (default: bench/harness.py's venv of
peers; a peer whose interpreter is absent is not measured).
Every run's rows are checked: mpbackend's and trackio's read back from their
stores, wandb's from the returned run's summary step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import json, os, sys, time
    import psutil

    lib, steps, keys, work, outdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4]), sys.argv[5]
    me = psutil.Process()
    names = [f"train/metric_{i}" for i in range(keys)]

    def spin(n):
        x = 0.0
        for i in range(n):
            x += i * 0.5
        return x

    def tree_cpu():
        total = sum(me.cpu_times()[:2])
        for child in me.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.Error:
                pass
        t = os.times()
        return total + t.children_user + t.children_system

    def switches():
        total = me.num_ctx_switches().voluntary
        for child in me.children(recursive=True):
            try:
                total += child.num_ctx_switches().voluntary
            except psutil.Error:
                pass
        return total

    t0 = time.perf_counter()
    if lib == "mpbackend":
        import mpbackend as wandb
        run = wandb.init(project="bench", dir=outdir,
                         settings=json.loads(os.environ.get("REALRATE_SETTINGS") or "{}"))
        log, finish = run.log, run.finish
    elif lib == "wandb":
        import wandb
        settings = wandb.Settings(mode="offline", silent=True, console="off", save_code=False,
                                  disable_git=True, disable_job_creation=True,
                                  x_disable_stats=True, x_disable_meta=True)
        run = wandb.init(project="bench", dir=outdir, settings=settings)
        log, finish = run.log, run.finish
    elif lib == "trackio":
        import trackio
        run = trackio.init(project="bench", embed=False, auto_log_cpu=False,
                           auto_log_gpu=False)
        log, finish = run.log, run.finish
    else:
        log = lambda data: None
        finish = lambda: None
    sw0, cpu0, own0 = switches(), tree_cpu(), sum(me.cpu_times()[:2])
    loop0 = time.perf_counter()
    spun = 0.0
    clock = time.thread_time
    for step in range(steps):
        c = clock()
        x = spin(work)
        spun += clock() - c
        log({name: x + step + k for k, name in enumerate(names)})
    loop = time.perf_counter() - loop0
    sw = switches() - sw0
    finish()
    mine = sum(me.cpu_times()[:2]) - own0 - spun
    cpu = tree_cpu() - cpu0 - spun  # all but the training work itself
    rows = steps
    if lib == "mpbackend":
        rows = sum(1 for _ in wandb.Api(outdir).run(f"bench/{run.id}").scan_history())
    elif lib == "trackio":
        from trackio.sqlite_storage import SQLiteStorage
        rows = len(SQLiteStorage.get_logs("bench", run.name))
    print(json.dumps({"lib": lib, "loop": loop, "cpu": cpu, "own": mine, "spun": spun,
                      "switches": sw, "rows": rows,
                      "total": time.perf_counter() - t0}))
""")


def calibrate(step_ms: float) -> int:
    """Iterations of the child's spin() that take ``step_ms`` of CPU here."""
    n = 200_000
    while True:
        t = time.process_time()
        x = 0.0
        for i in range(n):
            x += i * 0.5
        took = time.process_time() - t
        if took > 0.05:
            return max(1, int(n * step_ms / 1000 / took))
        n *= 2


def run_one(python: str, lib: str, steps: int, keys: int, work: int, one_core: bool,
            tree: str, settings: str = "") -> dict:
    outdir = tempfile.mkdtemp(prefix=f"realrate-{lib}-")
    env = {**os.environ, "PYTHONPATH": tree, "TRACKIO_DIR": outdir, "WANDB_SILENT": "true",
           "MPBACKEND_SILENT": "1", "WANDB_MODE": "offline", "REALRATE_SETTINGS": settings}
    cmd = [python, "-c", CHILD, lib, str(steps), str(keys), str(work), outdir]
    if one_core:
        cmd = ["taskset", "-c", "0", *cmd]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              cwd=outdir)
        if done.returncode != 0:
            raise RuntimeError(f"{lib}: {done.stderr[-2000:]}")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"lib"')]
        if not lines:
            raise RuntimeError(f"{lib}: no result; {done.stdout[-1000:]} {done.stderr[-2000:]}")
        out = json.loads(lines[-1])
        if out["rows"] != steps:
            raise RuntimeError(f"{lib}: {out['rows']} rows read back of {steps}")
        return out
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--step-ms", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    peers = os.path.join(HERE, "bench", ".venv-peers", "bin", "python")  # bench/harness.py's
    parser.add_argument("--trackio-python", default=peers)
    parser.add_argument("--wandb-python", default=peers)
    parser.add_argument("--libs", default="mpbackend,trackio,wandb")
    parser.add_argument("--settings", action="append", default=[], metavar="JSON",
                        help="also measure mpbackend with these Settings (repeatable), "
                             'e.g. \'{"send_interval": 0.1, "commit_interval": 1.0}\'')
    parser.add_argument("--tree", action="append", metavar="PATH",
                        help="mpbackend source tree(s) to measure (default: this checkout)")
    args = parser.parse_args()
    work = calibrate(args.step_ms)
    trees = args.tree or [HERE]
    wanted = args.libs.split(",")
    libs: list[tuple[str, str, str, str]] = [("none", sys.executable, HERE, "")]
    if "mpbackend" in wanted:
        for t in trees:
            label = (f"mpbackend@{os.path.basename(os.path.abspath(t))}" if len(trees) > 1
                     else "mpbackend")
            libs.append((label, sys.executable, os.path.abspath(t), ""))
            for extra in args.settings:
                libs.append((f"{label} {extra}", sys.executable, os.path.abspath(t), extra))
    for peer, python in (("trackio", args.trackio_python), ("wandb", args.wandb_python)):
        if peer not in wanted:
            continue
        if os.path.exists(python):
            libs.append((peer, python, HERE, ""))
        else:
            print(f"no python for {peer} at {python}: not measured", file=sys.stderr)
    results: dict[tuple[str, bool], list[dict]] = {}
    for _ in range(args.repeat):
        for one_core in (False, True):
            for label, python, tree, settings in libs:
                lib = label.split("@")[0].split(" ")[0]
                results.setdefault((label, one_core), []).append(
                    run_one(python, lib, args.steps, args.keys, work, one_core, tree, settings))
    base_cpu = statistics.median(r["cpu"] for r in results[("none", False)])
    # The loop's wall time per second of its own work: run-to-run changes in the
    # machine's speed scale both, and cancel.
    base_loop1 = statistics.median(r["loop"] / r["spun"] for r in results[("none", True)])
    print(f"{args.steps} steps of {args.step_ms} ms CPU ({work} spin iterations), "
          f"{args.keys} floats logged per step, median of {args.repeat}\n")
    print("| library | logging CPU per step µs | loop slowdown on one core | "
          "wake-ups per s of loop (2 cores) | loop s (2 cores) |")
    print("|---|---:|---:|---:|---:|")
    for label, _, _, _ in libs:
        two, one = results[(label, False)], results[(label, True)]
        cpu = statistics.median(r["cpu"] for r in two) - base_cpu
        slow = statistics.median(r["loop"] / r["spun"] for r in one) / base_loop1 - 1
        wakes = statistics.median(r["switches"] / r["loop"] for r in two)
        loop = statistics.median(r["loop"] for r in two)
        print(f"| {label} | {cpu / args.steps * 1e6:,.1f} | {slow * 100:+.1f}% | "
              f"{wakes:,.0f} | {loop:.2f} |")


if __name__ == "__main__":
    main()
