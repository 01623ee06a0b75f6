"""Benchmark of the service process's start: what it loads and how long it takes.

    python bench/service_start.py [--repeat 5] [--tree PATH [--tree PATH ...]]

For each source tree (``--tree``, repeatable; default: the checkout holding this
script), whose ``mpbackend`` is byte-compiled first, ``--repeat`` fresh training
processes each call ``mpbackend.setup()`` with the default settings and start
method (spawn), then ``mpbackend.teardown()``. The trees' repetitions are
interleaved (tree A rep 1, tree B rep 1, tree A rep 2, ...) so that machine
noise hits every tree alike. Each repetition is two fresh processes:

* a plain one, which times ``mpbackend.setup()``: launching the service process
  until its ready reply has arrived (``setup`` is looked up on the package
  before the clock starts, so a lazy package's look-up is not counted);
* an instrumented one, whose service process is started through a wrapper
  (``multiprocessing.set_executable``): a shell script that execs the same
  python with ``-X importtime``, the service's stderr appended to a file, and a
  few lines put before its ``-c`` program that hook the stdlib only
  (``BaseProcess._bootstrap`` and ``Connection.send_bytes``, no import of
  their own): at the first message the service sends holding ``Ready`` (its
  ready reply) the hook copies the names in ``sys.modules`` and writes a marker
  line to stderr. Imports the service makes after it is ready (psutil, for the
  system-metrics thread) fall after the marker and are not counted. The wrapper
  (a ``/bin/sh`` exec) and ``-X importtime`` make this process's setup slower;
  its figure is shown apart.

Figures, median over the repetitions, then a table of the spread (min-max):

* modules:        how many modules the service process has loaded (``sys.modules``)
                  when it sends its ready reply
* mpbackend:      how many of them are ``mpbackend`` or ``mpbackend.*``
* imports ms:     the service's import time up to its ready reply: the sum of the
                  cumulative times of its top-level imports (``-X importtime``),
                  interpreter start-up (site, encodings) and multiprocessing included
* from target ms: the part of it from the first top-level ``mpbackend`` import on:
                  the Process object's target (unpickled by reference, so its
                  module is imported) and every import after it. ``-X importtime``
                  has no line for a module loaded by ``importlib.import_module``
                  (the current layout's ``mpbackend.service.mux``): its imports
                  show as top-level ones and its body's own time (under 1 ms) is
                  in neither figure
* to ready ms:    wall time in the service from the start of its ``-c`` program
                  (interpreter start-up and site done) to its ready reply, under
                  ``-X importtime``
* setup ms:       ``mpbackend.setup()`` in the plain process
* setup ms (-X importtime): the same in the instrumented process

Then the ``mpbackend`` modules each tree's service loads, and the other modules
that some tree's service loads and another's does not.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import textwrap

from trees import cells, compile_tree, describe

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout
MARKER = "mpbackend-bench: service ready"
ENV_STDERR = "MPBACKEND_BENCH_STDERR"  # where the wrapper sends the service's stderr
ENV_MODULES = "MPBACKEND_BENCH_MODULES"  # where the hook writes the service's sys.modules
CHILD_TIMEOUT = 120.0

# Put before the service's ``-c`` program by the wrapper. It imports nothing the
# program does not import next (``multiprocessing.process``, through
# ``multiprocessing.spawn``; ``time`` is loaded at interpreter start-up);
# ``Connection`` is loaded by the time the Process object is unpickled (its
# queues hold Connections), i.e. before ``_bootstrap``. At the ready reply it
# writes the time since the program started, then the names in sys.modules.
HOOK = textwrap.dedent(f"""
    import time as _bench_time
    _bench_started = _bench_time.perf_counter()
    import multiprocessing.process as _bench_process
    def _bench_install():
        import os, sys
        bootstrap = _bench_process.BaseProcess._bootstrap
        def _bootstrap(self, *args, **kwargs):
            connection = sys.modules.get("multiprocessing.connection")
            if connection is not None:
                send_bytes = connection.Connection.send_bytes
                done = []
                def hooked(conn, buf, offset=0, size=None):
                    if done or b"Ready" not in bytes(memoryview(buf)[:400]):
                        return send_bytes(conn, buf, offset, size)
                    done.append(1)
                    elapsed = _bench_time.perf_counter() - _bench_started
                    names = list(sys.modules)
                    os.write(2, b"\\n{MARKER}\\n")
                    try:
                        return send_bytes(conn, buf, offset, size)
                    finally:
                        path = os.environ["{ENV_MODULES}"]
                        with open(path + ".part", "w") as out:
                            out.write("\\n".join([repr(elapsed)] + names))
                        os.replace(path + ".part", path)
                connection.Connection.send_bytes = hooked
            return bootstrap(self, *args, **kwargs)
        _bench_process.BaseProcess._bootstrap = _bootstrap
    _bench_install()
    del _bench_install
""")

# multiprocessing's executable in the instrumented process. Only the service
# (its arguments end in --multiprocessing-fork) is instrumented; anything else
# spawned this way (a resource tracker) runs as it would have.
WRAPPER = """#!/bin/sh
HOOK={hook}
service=0
for arg in "$@"; do
    if [ "$arg" = --multiprocessing-fork ]; then service=1; fi
done
if [ "$service" = 0 ]; then exec {python} "$@"; fi
count=$#
prev=
for arg in "$@"; do
    if [ "$prev" = -c ]; then set -- "$@" "$HOOK
$arg"; else set -- "$@" "$arg"; fi
    prev=$arg
done
shift "$count"
exec {python} -X importtime "$@" 2>>"${env}"
"""

CHILD = textwrap.dedent("""
    import json, multiprocessing, os, sys, time

    wrapper, outdir = sys.argv[1], sys.argv[2]
    modules_path = os.path.join(outdir, "modules.txt")
    if wrapper:
        multiprocessing.set_executable(wrapper)
        os.environ[%(stderr)r] = os.path.join(outdir, "service.stderr")
        os.environ[%(modules)r] = modules_path
    import mpbackend

    setup = mpbackend.setup
    t0 = time.perf_counter()
    setup()
    t1 = time.perf_counter()
    names = None
    if wrapper:
        deadline = time.monotonic() + 10.0  # the hook writes the file just after Ready
        while not os.path.exists(modules_path) and time.monotonic() < deadline:
            time.sleep(0.005)
        if os.path.exists(modules_path):
            with open(modules_path) as f:
                names = f.read().split("\\n")
    mpbackend.teardown()
    left = []
    for child in multiprocessing.active_children():  # reaps those that have ended
        left.append(child.pid)
        child.kill()
        child.join(5.0)
    print(json.dumps({"setup_s": t1 - t0, "modules": names, "file": mpbackend.__file__,
                      "left_running": left}))
""") % {"stderr": ENV_STDERR, "modules": ENV_MODULES}

IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def run_child(tree: str, wrapper: str, tmp: str) -> dict:
    """One fresh training process; its whole process group is killed if it overruns."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, wrapper, tmp], cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": tree}, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        raise SystemExit(f"benchmark child ({tree}) still running after {CHILD_TIMEOUT:g} s: "
                         "killed") from None
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({tree}):\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    real = os.path.realpath(tree)
    if os.path.commonpath([os.path.realpath(result["file"]), real]) != real:
        raise SystemExit(f"the child imported {result['file']}, not the one in {tree}")
    if result["left_running"]:
        raise SystemExit(f"{tree}: processes {result['left_running']} still ran after "
                         "teardown() (killed)")
    return result


def parse_importtime(path: str) -> tuple[float, float]:
    """Import time up to the ready marker, in s: (all, from the first mpbackend import on).

    The sums of the cumulative times of top-level imports. ``-X importtime`` times
    only imports made by the import statement (or ``__import__``): a module loaded
    by ``importlib.import_module`` has no line, its own imports show as top-level
    ones and its body's time is in no line.
    """
    total = ours = 0
    seen_marker = in_target = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.strip() == MARKER:
                seen_marker = True
                break
            match = IMPORTTIME.match(line)
            if match is None or match.group(3) != " ":  # header, nested import, other output
                continue
            cumulative, name = int(match.group(2)), match.group(4)
            total += cumulative
            in_target = in_target or name == "mpbackend" or name.startswith("mpbackend.")
            if in_target:
                ours += cumulative
    if not seen_marker:
        raise SystemExit(f"no ready marker in the service's stderr ({path})")
    return total / 1e6, ours / 1e6


def measure(tree: str, wrapper: str) -> dict:
    """One repetition for one tree: a plain process, then an instrumented one."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = run_child(tree, "", tmp)
    with tempfile.TemporaryDirectory() as tmp:
        inst = run_child(tree, wrapper, tmp)
        if inst["modules"] is None:
            raise SystemExit(f"{tree}: the service's modules were not written (no Ready "
                             "reply seen by the hook)")
        imports_s, ours_s = parse_importtime(os.path.join(tmp, "service.stderr"))
    ready_s, names = float(inst["modules"][0]), inst["modules"][1:]
    ours = sorted(n for n in names if n == "mpbackend" or n.startswith("mpbackend."))
    return {"modules": len(names), "mpbackend": len(ours), "imports_s": imports_s,
            "ours_s": ours_s, "ready_s": ready_s, "setup_s": plain["setup_s"],
            "setup_inst_s": inst["setup_s"], "names": names, "ours": ours}


FIGURES = (("modules", 1, ".0f"), ("mpbackend", 1, ".0f"), ("imports_s", 1e3, ".1f"),
           ("ours_s", 1e3, ".1f"), ("ready_s", 1e3, ".1f"), ("setup_s", 1e3, ".1f"),
           ("setup_inst_s", 1e3, ".1f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", action="append", metavar="PATH",
                        help="a source tree to measure (repeatable; default: this checkout)")
    args = parser.parse_args()
    labels = args.tree or [HERE]
    trees = [os.path.abspath(t) for t in labels]
    for tree in trees:
        compile_tree(tree)
    results: list[list[dict]] = [[] for _ in trees]
    with tempfile.TemporaryDirectory() as tools:
        wrapper = os.path.join(tools, "python-importtime")
        with open(wrapper, "w") as f:
            f.write(WRAPPER.format(hook=shlex.quote(HOOK), python=shlex.quote(sys.executable),
                                   env=ENV_STDERR))
        os.chmod(wrapper, 0o755)
        for rep in range(args.repeat):
            for runs, label, tree in zip(results, labels, trees):
                print(f"  rep {rep + 1}/{args.repeat}: {label}", file=sys.stderr, flush=True)
                runs.append(measure(tree, wrapper))

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, start method spawn, "
          f"{args.repeat} repetitions per tree (interleaved), each a plain and an "
          "instrumented fresh process")
    for label, tree in zip(labels, trees):
        print(f"tree {label}: {describe(tree)}")
    columns = ("| tree | modules | mpbackend | imports ms | from target ms | to ready ms "
               "| setup ms | setup ms (-X importtime) |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for title, spread in (("medians", False),
                          (f"spread: min-max over the {args.repeat} repetitions", True)):
        print(f"\n{title}\n\n{columns}")
        for label, runs in zip(labels, results):
            print(f"| {label} | {cells(runs, FIGURES, spread)} |")

    print("\nmpbackend modules in the service process when it is ready:")
    for label, runs in zip(labels, results):
        union = sorted(set().union(*(r["ours"] for r in runs)))
        varying = [n for n in union if not all(n in r["ours"] for r in runs)]
        print(f"\n{label} ({len(union)}):")
        print(textwrap.fill(", ".join(union), width=100, initial_indent="  ",
                            subsequent_indent="  "))
        if varying:
            print(f"  not in every repetition: {', '.join(varying)}")
    if len(trees) > 1:
        print("\nother modules loaded by some tree's service and not by another's "
              "(in any repetition):")
        loaded = [set().union(*(r["names"] for r in runs)) for runs in results]
        everyone = set.intersection(*loaded)
        for label, names in zip(labels, loaded):
            extra = sorted(n for n in names - everyone if not n.startswith("mpbackend"))
            print(f"\n{label} only ({len(extra)}):")
            print(textwrap.fill(", ".join(extra) or "(none)", width=100, initial_indent="  ",
                                subsequent_indent="  "))


if __name__ == "__main__":
    main()
