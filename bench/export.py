"""Export of a long run: ``mpbackend export`` to parquet, csv and jsonl, beside pandas
doing the same from a DataFrame of the same rows, and a parquet read of them.

    python bench/export.py [--steps 1000000] [--keys 10] [--repeat 3]

One run of ``--steps`` rows of ``--keys`` floats is logged once (a fresh process).
Then each figure is the median over ``--repeat`` fresh processes:

* export FORMAT: ``mpbackend.read.cli.main(["export", RUN, "-o", FILE])`` timed in a
  process that imported the CLI, pandas and pyarrow first (the export's own work),
  and the whole command ``python -m mpbackend export`` as a user runs it (start-up
  and imports included);
* pandas: ``pd.read_parquet`` of the exported file (the read the issue compares
  with), and ``DataFrame.to_parquet`` / ``to_csv`` / ``to_json(orient="records",
  lines=True)`` of that DataFrame (pandas writing the same rows).

Every export is checked: its row count read back equals the steps.
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
ENV = {**os.environ, "PYTHONPATH": HERE, "MPBACKEND_SILENT": "1"}

WRITE = textwrap.dedent("""
    import sys, mpbackend
    steps, keys, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    run = mpbackend.init(project="bench", dir=where)
    names = [f"metric_{i}" for i in range(keys)]
    for s in range(steps):
        run.log({n: s * 0.001 + i for i, n in enumerate(names)})
    run.finish()
    print(f"bench/{run.id}")
""")

TIMED = textwrap.dedent("""
    import json, sys, time
    import pandas as pd, pyarrow.parquet  # noqa: F401  (imported before the clock)
    from mpbackend.read import cli
    what, where, run, out = sys.argv[1:5]
    if what.startswith("export-"):
        t = time.perf_counter()
        try:
            cli.main(["export", run, "--dir", where, "-o", out, "--no-progress"])
        except SystemExit as exit:  # main() ends with the command's exit status
            if exit.code:
                raise
        took = time.perf_counter() - t
    else:
        frame = pd.read_parquet(sys.argv[5])
        t = time.perf_counter()
        if what == "pandas-read-parquet":
            frame = pd.read_parquet(sys.argv[5])
        elif what == "pandas-parquet":
            frame.to_parquet(out)
        elif what == "pandas-csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_json(out, orient="records", lines=True)
        took = time.perf_counter() - t
    print(json.dumps({"took": took}))
""")


def timed(what: str, where: str, run: str, out: str, ref: str) -> float:
    done = subprocess.run([sys.executable, "-c", TIMED, what, where, run, out, ref], env=ENV,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{what}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["took"]


def command(fmt: str, where: str, run: str, out: str) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "mpbackend", "export", run, "--dir", where,
                           "-o", out, "--no-progress"], env=ENV, capture_output=True,
                          text=True, timeout=600)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"export {fmt}: {done.stderr[-2000:]}")
    return took


def rows_in(path: str, fmt: str) -> int:
    import pandas as pd

    if fmt == "parquet":
        return len(pd.read_parquet(path))
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - (1 if fmt == "csv" else 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-export-")
    try:
        where = os.path.join(work, "mpruns")
        made = subprocess.run([sys.executable, "-c", WRITE, str(args.steps), str(args.keys),
                               where], env=ENV, capture_output=True, text=True, timeout=1200)
        if made.returncode != 0:
            raise RuntimeError(made.stderr[-2000:])
        run = made.stdout.strip().splitlines()[-1]
        ref = os.path.join(work, "ref.parquet")
        command("parquet", where, run, ref)
        times: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for fmt in ("parquet", "csv", "jsonl"):
                out = os.path.join(work, f"out.{fmt}")
                times.setdefault(f"export {fmt}", []).append(
                    timed(f"export-{fmt}", where, run, out, ref))
                if rows_in(out, fmt) != args.steps:
                    raise RuntimeError(f"export {fmt}: {rows_in(out, fmt)} rows")
                times.setdefault(f"command {fmt}", []).append(command(fmt, where, run, out))
                times.setdefault(f"pandas {fmt}", []).append(
                    timed(f"pandas-{fmt}", where, run, out, ref))
            times.setdefault("pandas read parquet", []).append(
                timed("pandas-read-parquet", where, run, ref, ref))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{args.steps:,} rows x {args.keys} floats, median of {args.repeat} fresh "
              "processes\n")
        print("| format | export (in process) s | `mpbackend export` command s | "
              "pandas writes the DataFrame s | export ÷ pandas | export ÷ parquet read |")
        print("|---|---:|---:|---:|---:|---:|")
        read = med["pandas read parquet"]
        for fmt in ("parquet", "csv", "jsonl"):
            e, c, p = med[f"export {fmt}"], med[f"command {fmt}"], med[f"pandas {fmt}"]
            print(f"| {fmt} | {e:.2f} | {c:.2f} | {p:.2f} | {e / p:.2f}x | "
                  f"{e / read:.2f}x |")
        print(f"\npandas read_parquet of the exported file: {read:.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
