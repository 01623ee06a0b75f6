"""Benchmark of media logging: what an Image costs the training loop, and its memory.

    python bench/media.py [--images 1000] [--repeat 3] [--interval-ms 10]
                          [--peer NAME=PYTHON ...]   e.g. --peer wandb=/path/venv/bin/python

Between two images the loop spins ``--interval-ms`` (a training step, the CPU busy:
after a sleep the first microseconds of any code run several times slower, which
is the idle CPU's cost, not the library's; 0 logs the
images back to back, a burst: then every library's service falls behind its
encoding and the figures show how each holds the caller). Each measurement is a
fresh process per library (mpbackend from this checkout; a
peer from the interpreter given, which must have it and numpy installed), the
libraries interleaved over the repetitions. Per library, median over repetitions:

* copy us:       a bare ``arr.tobytes()`` of the same pixels, in the same loop: the
                 floor for any call that keeps a copy of the image (p50)
* image() us:    ``Image(arr)`` of a 256x256x3 uint8 array (p50 over the calls)
* log() us:      ``run.log({"img": image})`` (p50 and p99): the call's blocking time
* both us:       the two together, per image (p50), what the issue's 100 us bound is on
* growth MiB:    the training process's peak RSS (VmHWM) after logging ``--images``
                 distinct images minus its RSS after ``init()``
* finish ms:     ``finish()`` after the last image (the encoding left to do)
* stored:        image files found in the run afterwards (every image is distinct)

Also, for mpbackend: ``watch(model, log="all", log_freq=...)`` on a 3-layer MLP
(784-256-256-10, batch 64): the training step's time with and without watch, at
log_freq 100 (the cost between logging steps) and 1 (a histogram every step).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = textwrap.dedent("""
    import glob, json, os, sys, time
    import numpy as np

    def rss(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        return 0.0

    lib, n, outdir, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    if lib == "mpbackend":
        import mpbackend as wandb
        run = wandb.init(project="bench", dir=outdir)
        Image, log = wandb.Image, run.log
        finish = run.finish
        files = lambda: glob.glob(os.path.join(run.dir, "media", "images", "*.png"))
    elif lib == "wandb":
        import wandb
        run = wandb.init(project="bench", dir=outdir, mode="offline")
        Image, log, finish = wandb.Image, run.log, run.finish
        files = lambda: glob.glob(os.path.join(outdir, "wandb", "offline-run-*", "files",
                                               "media", "images", "*.png"))
    elif lib == "trackio":
        os.environ["TRACKIO_DIR"] = outdir  # read when trackio is imported
        import trackio
        trackio.init(project="bench")
        Image, log, finish = trackio.Image, trackio.log, trackio.finish
        files = lambda: glob.glob(os.path.join(outdir, "**", "*.png"), recursive=True)
    rng = np.random.default_rng(0)
    base_arrays = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)]
    base = rss("VmRSS:")
    pc = time.perf_counter_ns
    make, call, both, copy = [], [], [], []
    def spin():
        end = time.perf_counter() + interval
        while time.perf_counter() < end:
            pass
    for i in range(n):
        arr = base_arrays[i % 8]
        arr[0, 0, 0] = i % 256   # every image distinct: no store may dedupe
        arr[0, 0, 1] = i // 256
        if i % 10 == 0:  # the floor: a bare copy of the pixels, after a step as the rest
            t0 = pc()
            arr.tobytes()
            copy.append((pc() - t0) / 1000)
            spin()
        t0 = pc()
        img = Image(arr)
        t1 = pc()
        log({"img": img})
        t2 = pc()
        make.append((t1 - t0) / 1000); call.append((t2 - t1) / 1000)
        both.append((t2 - t0) / 1000)
        spin()  # a training step: the CPU busy (a sleep would leave it cold)
    growth = rss("VmHWM:") - base
    t3 = time.perf_counter()
    finish()
    t4 = time.perf_counter()
    def q(values, p):
        values = sorted(values)
        return values[min(len(values) - 1, int(p * len(values)))]
    print("RESULT " + json.dumps({"copy": q(copy, .5), "image": q(make, .5),
                                  "log50": q(call, .5),
                                  "log99": q(call, .99), "both": q(both, .5),
                                  "growth": growth, "finish": (t4 - t3) * 1000,
                                  "stored": len(files())}))
""")

WATCH = textwrap.dedent("""
    import json, sys, time, torch
    import mpbackend as wandb
    freq, steps, outdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 784), torch.randint(0, 10, (64,))
    run = wandb.init(project="bench", dir=outdir)
    if freq:
        run.watch(model, log="all", log_freq=freq)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        run.log({"loss": loss.item()})
        times.append(time.perf_counter() - t0)
    run.finish()
    times.sort()
    print("RESULT " + json.dumps({"step_ms": times[len(times) // 2] * 1000,
                                  "mean_ms": sum(times) / len(times) * 1000}))
""")


def child(python: str, code: str, args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "MPBACKEND_SILENT": "1", "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true"}
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=900)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{python} {args[:1]} failed: {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer", action="append", default=[], help="NAME=PYTHON")
    parser.add_argument("--watch-steps", type=int, default=400)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    libs = [("mpbackend", sys.executable)] + [tuple(p.split("=", 1)) for p in args.peer]
    results: dict[str, list[dict]] = {name: [] for name, _ in libs}
    for _ in range(args.repeat):
        for name, python in libs:
            with tempfile.TemporaryDirectory() as out:
                results[name].append(child(python, CHILD, [name, str(args.images), out,
                                                            str(args.interval_ms / 1000)]))
    print(f"images: {args.images} distinct 256x256x3 uint8, {args.interval_ms:g} ms apart, "
          f"median of {args.repeat}\n")
    print("| library | copy us | image() us | log() p50 us | log() p99 us | both p50 us "
          "| growth MiB | finish ms | stored |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"| {name} | {med['copy']:.1f} | {med['image']:.1f} | {med['log50']:.1f} | "
              f"{med['log99']:.1f} | "
              f"{med['both']:.1f} | {med['growth']:.1f} | {med['finish']:.0f} | "
              f"{int(med['stored'])} |")
    print("\nwatch(model, log='all') on a 784-256-256-10 MLP, batch 64, one thread, "
          f"{args.watch_steps} steps (median step ms, median of {args.repeat}):\n")
    print("| watch | step p50 ms | step mean ms |")
    print("|---|---:|---:|")
    for freq in (0, 100, 1):
        rows = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as out:
                rows.append(child(sys.executable, WATCH, [str(freq), str(args.watch_steps), out]))
        label = "off" if not freq else f"log_freq={freq}"
        print(f"| {label} | {statistics.median(r['step_ms'] for r in rows):.3f} | "
              f"{statistics.median(r['mean_ms'] for r in rows):.3f} |")


if __name__ == "__main__":
    main()
