"""Benchmark mpbackend against wandb (offline), trackio, tensorboardX, MLflow and a raw pipe.

    python bench/harness.py [--steps 20000 200000] [--repeat 3] [--only mpbackend,wandb]
                            [--skip-install] [--max-run-seconds 90] [--out BENCHMARKS.md]
                            [--workloads main,read1m,runs50,dataloader,keys100,threads8]
                            [--workload-n read1m=1000000,runs50=10000,...]
                            [--workload-seconds 10] [--read1m-write-seconds 30]

The peers are installed by this script into their own virtual environment,
bench/.venv-peers (created once with ``python -m venv`` and pip, reused afterwards; a
constraint forbids pip to bring in torch). mpbackend and the raw baseline run with the
current interpreter. Every run is a fresh process (bench/peers/child.py) with the same
workload: N steps, each a dict of 10 floats; the table gives medians over the repetitions.
Runs are interleaved (repeat 1 of every library, then repeat 2, ...) so that drift of the
machine spreads over all libraries. Results go to BENCHMARKS.md and bench/results/*.json.

The other workloads (all by default; ``--workloads main`` is the main table alone) run
from bench/peers/workloads.py, again one fresh process per run, and each gets a section:
reading 1,000,000 rows into a DataFrame (read1m), 50 runs at once (runs50), 4 DataLoader
workers logging (dataloader, mpbackend only), 100 keys per step (keys100) and 8 logging
threads (threads8). Their logging phase is bounded by --workload-seconds; a library that
reaches the bound stops there and is reported as capped with the rows it logged.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
CHILD = os.path.join(BENCH, "peers", "child.py")
VENV = os.path.join(BENCH, ".venv-peers")
LIBS = ["mpbackend", "wandb", "trackio", "tensorboardx", "mlflow", "raw", "raw-json"]
PEERS = {"wandb": "wandb", "trackio": "trackio", "tensorboardx": "tensorboardX",
         "mlflow": "mlflow"}  # harness name -> pip / import name
HOW = {
    "mpbackend": "`mpbackend.init(dir=tmp)`, `run.log(dict)`, `run.finish()`; service process "
                 "started with spawn (the default)",
    "wandb": "`wandb.init(settings=Settings(mode='offline', silent=True, console='off', "
             "x_disable_stats=True, x_disable_meta=True, disable_git=True, ...))`, "
             "`run.log(dict)`, `run.finish()`; the wandb-core process writes the .wandb file",
    "trackio": "`trackio.init(project, embed=False, auto_log_cpu=False, auto_log_gpu=False)`, "
               "`trackio.log(dict)`, `trackio.finish()`; local SQLite under TRACKIO_DIR=tmp, "
               "no server or UI launched",
    "tensorboardx": "`SummaryWriter(logdir=tmp)` with its defaults (max_queue=10, "
                    "flush_secs=120), one `add_scalar(key, value, step)` per key per step "
                    "(10 calls make one step), `close()`",
    "mlflow": "file store (`set_tracking_uri('file://tmp/mlruns')`, needs "
              "MLFLOW_ALLOW_FILE_STORE=true since MLflow 3.x), `start_run()`, "
              "`log_metrics(dict, step=step)` (synchronous, the default), `end_run()`",
    "raw": "the records as (step, dict) tuples, pickled in batches of 1,000 (protocol 5) "
           "into an os.pipe; a child process unpickles each batch and appends it to a file "
           "as one length-prefixed pickle frame (read back by unpickling every frame); "
           "finish = close the pipe and wait for the child",
    "raw-json": "as raw, but the child writes one JSON line per record (json encoding of "
                "the floats dominates: the child, not the pipe, is then the limit)",
}
WORKLOADS_PY = os.path.join(BENCH, "peers", "workloads.py")
WORKLOADS = ["main", "read1m", "runs50", "dataloader", "keys100", "threads8"]
WORKLOAD_N = {"read1m": 1_000_000, "runs50": 10_000, "dataloader": 5_000, "keys100": 10_000,
              "threads8": 20_000}
WORKLOAD_LIBS = {  # who takes part in each workload; the section texts say why
    "read1m": ["mpbackend", "wandb", "trackio", "tensorboardx", "mlflow", "raw", "raw-json"],
    "runs50": ["mpbackend", "wandb", "trackio", "tensorboardx", "mlflow"],
    "dataloader": ["mpbackend", "none"],
    "keys100": ["mpbackend", "wandb", "trackio", "tensorboardx", "mlflow", "raw", "raw-json"],
    "threads8": ["mpbackend", "wandb", "trackio", "tensorboardx", "mlflow"],
}
WORKLOAD_TITLE = {
    "read1m": "Reading {n} history rows into a pandas DataFrame",
    "runs50": "50 runs at once, {n} steps each",
    "dataloader": "4 DataLoader workers logging while the main loop logs ({n} batches)",
    "keys100": "A dict of 100 keys per step ({n} steps)",
    "threads8": "Logging from 8 threads into one run ({n} steps in all)",
}
WORKLOAD_HOW = {
    "read1m": "One run of N steps of 10 floats (the main workload) is written once per library "
              "in a fresh process, then read back whole into a pandas DataFrame in {repeat} "
              "more fresh processes each (medians; a library's reads run back to back, not "
              "interleaved). *import*: `import pandas` and the library; *read*: from the "
              "library's read call to the finished DataFrame, whose rows are counted and whose "
              "last row is checked; *µs/row* = read / rows, the figure to compare when a store "
              "is capped. The write's logging phase is bounded by --read1m-write-seconds "
              "({write_s:.0f} s): a library still logging then stops and its store holds fewer "
              "rows (*capped*). How each library reads:",
    "runs50": "One process opens 50 runs and keeps all of them open, then logs N steps of 10 "
              "floats to each, round-robin (step s to runs 0..49, then step s + 1): 50 × N rows. "
              "mpbackend and wandb: `init(reinit=\"create_new\")` and `run.log`; trackio: each "
              "`trackio.init` in its own `contextvars.Context` (trackio.init finishes the "
              "current run of its context) and `Run.log`; tensorboardX: 50 SummaryWriters, "
              "one logdir each; MLflow: `MlflowClient.create_run` × 50 and "
              "`mlflow.log_metrics(dict, step, run_id=...)`. setup+init includes opening the 50 "
              "runs; log p50/p99 is per call (one run's step); steps/s = all rows / (loop + "
              "finishing all 50); every run is read back into a DataFrame and checked. The raw "
              "baselines are not run (one pipe and writer per run would be another design).",
    "dataloader": "mpbackend only: torch is installed in the project's interpreter but never in "
                  "the peers' venv (it is gigabytes), so no peer can run this. A "
                  "`torch.utils.data.DataLoader(batch_size=4, num_workers=4)` (fork, Linux's "
                  "default) over a Dataset whose `__getitem__` logs one row `{{item, value}}` "
                  "into the parent's run, while the main loop logs `{{loss, batch}}` once per "
                  "batch: N batches, 5 × N rows. log p50/p99: the main loop's calls; *worker "
                  "log*: the workers' calls (each item returns its time); steps/s: all rows / "
                  "(loop + finish); bg RSS includes the 4 workers. Read back: one "
                  "`_worker`-tagged row per item from all 4 worker ids, and N untagged rows. "
                  "*none*: the same loop with no logging (the DataLoader's own cost).",
    "keys100": "As the main workload, one run of N steps, but each step logs a dict of 100 "
               "floats (tensorboardX: 100 `add_scalar` calls make one step). Read back into a "
               "DataFrame: N rows of 100 keys, the last row checked.",
    "threads8": "One run; 8 threads, released together by a barrier, each log N / 8 steps of "
                "`{{thread, i, 8 floats}}` into it: mpbackend, wandb, trackio `run.log(dict)` "
                "(each call a row); tensorboardX `add_scalar` and MLflow "
                "`log_metrics(run_id=...)` (its fluent active run is per thread) with step "
                "thread + 8 i. log p50/p99 over all threads' calls. Read back: N rows, N / 8 per "
                "`thread` value. raw is not run (its writer is not thread-safe).",
}
# Keeps the peers off the network and their telemetry off; HTTP(S) is pointed at a closed
# loopback port so that anything that still tries fails at once instead of leaving the box.
PEER_ENV = {
    "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true",
    "WANDB_DISABLE_GIT": "true", "WANDB_ERROR_REPORTING": "false", "WANDB_CONSOLE": "off",
    "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ALLOW_FILE_STORE": "true", "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "", "no_proxy": "",
}


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def installed_peers(venv: str) -> dict[str, str]:
    """name -> version of the peers importable in the venv."""
    py = venv_python(venv)
    if not os.path.exists(py):
        return {}
    code = ("import importlib.metadata as m, json\nout = {}\n"
            f"for name, dist in {PEERS!r}.items():\n"
            "    for d in (dist, dist.lower(), dist + '-skinny'):\n"
            "        try:\n            out[name] = d + ' ' + m.version(d); break\n"
            "        except m.PackageNotFoundError:\n            pass\n"
            "print(json.dumps(out))")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def install(venv: str, wanted: list[str]) -> None:
    if not os.path.exists(venv_python(venv)):
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    have = installed_peers(venv)
    missing = [n for n in wanted if n not in have]
    if not missing:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as c:
        c.write("torch<0\n")  # unsatisfiable: a peer that needs torch fails instead
    pip = [venv_python(venv), "-m", "pip", "install", "-q", "-c", c.name]
    print(f"installing {', '.join(missing)} into {venv} (takes minutes the first time)",
          flush=True)
    if subprocess.run(pip + ["psutil"] + [PEERS[n] for n in missing]).returncode != 0:
        for n in missing:  # one at a time, so one failure does not cost the others
            if subprocess.run(pip + [PEERS[n]]).returncode != 0 and n == "mlflow":
                subprocess.run(pip + ["mlflow-skinny"])
    os.unlink(c.name)


def child_env(tmp: str) -> dict[str, str]:
    """The environment of a benchmark process whose stores go under ``tmp``."""
    return {**os.environ, **PEER_ENV, "WANDB_DIR": tmp, "MPBACKEND_DIR": tmp,
            "TRACKIO_DIR": os.path.join(tmp, "trackio"), "HF_HOME": os.path.join(tmp, "hf"),
            "MLFLOW_TRACKING_URI": "file://" + os.path.join(tmp, "mlruns")}


def run_once(lib: str, steps: int, py: str) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-{lib}-") as tmp:
        env = child_env(tmp)
        t0 = time.perf_counter()
        try:
            out = subprocess.run([py, CHILD, lib, str(steps), tmp], capture_output=True,
                                 text=True, timeout=1200, cwd=tmp, env=env)
        except subprocess.TimeoutExpired:
            return {"lib": lib, "steps": steps, "error": "timed out after 1200 s"}
        wall = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or not lines[-1].startswith("{"):
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"lib": lib, "steps": steps, "error": f"exit {out.returncode}: {err}"}
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    return result


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "memory": mem,
            "kernel": platform.release(), "python": sys.version.split()[0]}


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def fmt_table(results: dict, libs: list[str], steps_list: list[int], caps: dict) -> list[str]:
    rows = ["| library | N | runs | setup+init ms | log p50 µs | log p99 µs | steps/s "
            "| finish ms | main RSS MiB | bg RSS MiB | rows read back |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for steps in steps_list:
        for lib in libs:
            if (lib, steps) in caps:
                rows.append(f"| {lib} | {steps:,} | 0 | capped: not run at this N "
                            f"({caps[lib, steps]}) |||||||| |")
                continue
            runs = results.get((lib, steps), [])
            ok = [r for r in runs if "error" not in r]
            if not ok:
                err = runs[0]["error"] if runs else "not run"
                rows.append(f"| {lib} | {steps:,} | 0 | failed: {err[:150]} |||||||| |")
                continue
            counts = {r["rows"] for r in ok}
            if counts == {steps} and not any("MISMATCH" in r["verify_note"] for r in ok):
                verified = f"{steps:,} in {len(ok)}/{len(ok)} runs"
            elif counts == {None}:
                verified = "not verified: " + ok[0]["verify_note"]
            else:
                verified = f"**{sorted(counts, key=str)}** ({ok[0]['verify_note']})"
            bg = med(ok, "rss_bg_mib")
            rows.append(
                f"| {lib} | {steps:,} | {len(ok)} | {med(ok, 'init_s') * 1e3:,.0f} "
                f"| {med(ok, 'log_p50_us'):,.2f} | {med(ok, 'log_p99_us'):,.2f} "
                f"| {med(ok, 'steps_per_s'):,.0f} | {med(ok, 'finish_s') * 1e3:,.0f} "
                f"| {med(ok, 'rss_main_mib'):,.0f} | {f'{bg:,.0f}' if bg else '-'} "
                f"| {verified} |")
    return rows


def fmt_ratios(results: dict, libs: list[str], steps_list: list[int]) -> list[str]:
    rows = ["| N | peer | steps/s: mpbackend ÷ peer | log p50: peer ÷ mpbackend "
            "| log p99: peer ÷ mpbackend |", "|---:|---|---:|---:|---:|"]
    for steps in steps_list:
        mine = [r for r in results.get(("mpbackend", steps), []) if "error" not in r]
        if not mine:
            continue
        for lib in libs:
            peer = [r for r in results.get((lib, steps), []) if "error" not in r]
            if lib == "mpbackend" or not peer:
                continue
            rows.append(
                f"| {steps:,} | {lib} "
                f"| {med(mine, 'steps_per_s') / med(peer, 'steps_per_s'):.2f}× "
                f"| {med(peer, 'log_p50_us') / med(mine, 'log_p50_us'):.2f}× "
                f"| {med(peer, 'log_p99_us') / med(mine, 'log_p99_us'):.2f}× |")
    return rows


# ---------------------------------------------------------------- the other workloads


def run_child(argv: list[str], lib: str, py: str, tmp: str) -> dict:
    """One fresh process of bench/peers/workloads.py; its JSON line or an error."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run([py, WORKLOADS_PY, *argv], capture_output=True, text=True,
                             timeout=1200, cwd=tmp, env=child_env(tmp))
    except subprocess.TimeoutExpired:
        return {"lib": lib, "error": "timed out after 1200 s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines or not lines[-1].startswith("{"):
        err = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"lib": lib, "error": f"exit {out.returncode}: {err}"}
    result = json.loads(lines[-1])
    result["process_wall_s"] = time.perf_counter() - t0
    warned = [ln.split("Warning: ", 1)[1].strip() for ln in out.stderr.splitlines()
              if "Warning: " in ln]
    if warned:  # e.g. a peer saying that it dropped data
        result["warnings"] = [f"{len(warned)} warnings, the first: {warned[0][:200]}"]
    return result


def run_workload(workload: str, args, n: int, libs: list[str], interp: dict,
                 started: float) -> dict[str, list[dict]]:
    """lib -> its runs (read1m: the write, then the reads), interleaved over libraries."""
    todo = [lib for lib in WORKLOAD_LIBS[workload]
            if lib in libs or (lib == "none" and "mpbackend" in libs)]
    res: dict[str, list[dict]] = {lib: [] for lib in todo}

    def say(lib: str, what: str, r: dict) -> None:
        if "error" in r:
            msg = r["error"]
        elif "read_s" in r:
            msg = f"read {r['rows']:,} rows in {r['read_s']:.2f} s"
        elif r.get("phase") == "write":
            msg = (f"{r['steps']:,} rows at {r['steps_per_s']:,.0f} rows/s"
                   f"{' (capped)' if r['capped'] else ''}")
        else:
            msg = (f"{r['steps_per_s']:,.0f} steps/s, log p50 {r['log_p50_us']:.1f} µs, "
                   f"rows {r['rows']}{' (capped)' if r['capped'] else ''}")
        print(f"[{time.time() - started:6.0f} s] {workload} {lib} {what}: {msg}", flush=True)

    if workload == "read1m":
        for lib in todo:
            with tempfile.TemporaryDirectory(prefix=f"bench-{lib}-") as tmp:
                w = run_child(["read1m-write", lib, str(n), tmp, str(args.read1m_write_seconds)],
                              lib, interp[lib], tmp)
                w["phase"] = "write"
                res[lib].append(w)
                say(lib, "write", w)
                if "error" in w:
                    continue
                for rep in range(args.repeat):
                    r = run_child(["read1m-read", lib, str(w["steps"]), tmp, "0",
                                   json.dumps(w["ref"])], lib, interp[lib], tmp)
                    r["phase"] = "read"
                    res[lib].append(r)
                    say(lib, f"read {rep + 1}/{args.repeat}", r)
        return res
    for rep in range(args.repeat):
        for lib in todo:
            with tempfile.TemporaryDirectory(prefix=f"bench-{lib}-") as tmp:
                r = run_child([workload, lib, str(n), tmp, str(args.workload_seconds)], lib,
                              interp[lib], tmp)
            res[lib].append(r)
            say(lib, f"rep {rep + 1}/{args.repeat}", r)
    return res


def fmt_workload(workload: str, res: dict[str, list[dict]], n: int, args) -> list[str]:
    """One workload's section of BENCHMARKS.md."""
    lines = [f"## {WORKLOAD_TITLE[workload].format(n=f'{n:,}')}", "",
             WORKLOAD_HOW[workload].format(repeat=args.repeat,
                                           write_s=args.read1m_write_seconds), ""]
    if workload == "read1m":
        how = {lib: next((r["how_read"] for r in runs if "how_read" in r), "?")
               for lib, runs in res.items()}
        lines += [f"- **{lib}**: {how[lib]}" for lib in res] + ["", *fmt_read(res, n)]
        return lines + [""]
    worker = workload == "dataloader"
    lines += [
        "| library | runs | setup+init ms | log p50 µs | log p99 µs "
        + ("| worker log p50 µs | worker log p99 µs " if worker else "")
        + ("| batches/s " if worker else "| rows/s ")
        + "| finish ms | main RSS MiB | bg RSS MiB | rows read back |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if worker else "")
        + "---|"]
    for lib, runs in res.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            err = runs[0]["error"] if runs else "not run"
            lines.append(f"| {lib} | 0 | failed: {err[:150]} |" + " |" * (9 if worker else 7))
            continue
        target = n * (50 if workload == "runs50" else 5 if worker else 1)
        logged = {r["steps"] for r in ok}
        good = all(r["rows"] in (r["steps"], None) and "MISMATCH" not in r["verify_note"]
                   for r in ok)
        if {r["rows"] for r in ok} == {None}:
            verified = ok[0]["verify_note"]
        elif good:
            verified = (f"{med(ok, 'steps'):,.0f} in {len(ok)}/{len(ok)} runs" if len(logged) == 1
                        else f"all logged rows ({min(logged):,} to {max(logged):,}) in "
                             f"{len(ok)}/{len(ok)} runs")
        else:
            bad = [r for r in ok if r["rows"] != r["steps"] or "MISMATCH" in r["verify_note"]]
            verified = (f"**MISMATCH in {len(bad)} of {len(ok)} runs**, e.g. {bad[0]['rows']:,} "
                        f"rows read back of {bad[0]['steps']:,} logged: {bad[0]['verify_note']}")
            warned = sorted({w for r in ok for w in r.get("warnings", [])})
            if warned:
                verified += f" (its stderr: {warned[0]})"
        capped = [r for r in ok if r["capped"]]
        if capped:
            verified = (f"**capped** at the {args.workload_seconds:.0f} s bound in "
                        f"{len(capped)} of {len(ok)} runs: median {med(ok, 'steps'):,.0f} of "
                        f"{target:,} rows logged; " + verified)
        failed = [r["error"] for r in runs if "error" in r]
        if failed:
            verified += f"; **{len(failed)} of {len(runs)} runs failed**: {failed[0][:150]}"
        bg = med(ok, "rss_bg_mib")
        lines.append(
            f"| {lib} | {len(ok)} | {med(ok, 'init_s') * 1e3:,.0f} "
            f"| {med(ok, 'log_p50_us'):,.2f} | {med(ok, 'log_p99_us'):,.2f} "
            + (f"| {med(ok, 'worker_log_p50_us'):,.2f} | {med(ok, 'worker_log_p99_us'):,.2f} "
               if worker else "")
            + f"| {med(ok, 'batches_per_s' if worker else 'steps_per_s'):,.0f} "
            f"| {med(ok, 'finish_s') * 1e3:,.0f} "
            f"| {med(ok, 'rss_main_mib'):,.0f} | {f'{bg:,.0f}' if bg else '-'} | {verified} |")
    return lines + [""]


def fmt_read(res: dict[str, list[dict]], n: int) -> list[str]:
    rows = ["| library | rows in the store | written at rows/s | reads | import ms | read s "
            "| µs/row | reader RSS MiB | DataFrame |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for lib, runs in res.items():
        write = runs[0] if runs else {"error": "not run"}
        if "error" in write:
            rows.append(f"| {lib} | write failed: {write['error'][:150]} |" + " |" * 7)
            continue
        stored = f"{write['steps']:,}"
        if write["capped"]:
            stored += f" (**capped** at {write['loop_s']:.0f} s of {n:,})"
        reads = [r for r in runs[1:] if "error" not in r]
        if not reads:
            err = runs[1]["error"] if len(runs) > 1 else "not run"
            rows.append(f"| {lib} | {stored} | {write['steps_per_s']:,.0f} | 0 "
                        f"| read failed: {err[:150]} |" + " |" * 4)
            continue
        checks = sorted({r["verify_note"] for r in reads})
        if any(r["rows"] != write["steps"] for r in reads):
            checks = ["**MISMATCH**", *checks]
        rows.append(f"| {lib} | {stored} | {write['steps_per_s']:,.0f} | {len(reads)} "
                    f"| {med(reads, 'import_s') * 1e3:,.0f} | {med(reads, 'read_s'):,.2f} "
                    f"| {med(reads, 'read_us_per_row'):,.2f} | {med(reads, 'rss_main_mib'):,.0f} "
                    f"| {'; '.join(checks)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(LIBS),
                        help=f"comma-separated subset of {','.join(LIBS)}")
    parser.add_argument("--skip-install", action="store_true",
                        help="use the peers' venv as it is; peers missing there are skipped")
    parser.add_argument("--venv", default=VENV)
    parser.add_argument("--max-run-seconds", type=float, default=90.0,
                        help="a library whose projected run at a larger N (from its median "
                             "at the smallest N) exceeds this is capped: not run at that N")
    parser.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--workload-n", default="",
                        help="override the size of workloads, e.g. read1m=100000,runs50=1000 "
                             f"(defaults {','.join(f'{k}={v}' for k, v in WORKLOAD_N.items())})")
    parser.add_argument("--workload-seconds", type=float, default=10.0,
                        help="bound of the logging phase of each run of the workloads other "
                             "than main: a library still logging then stops and is capped")
    parser.add_argument("--read1m-write-seconds", type=float, default=30.0,
                        help="bound of the logging phase that writes read1m's store")
    args = parser.parse_args()
    workloads = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
    if [w for w in workloads if w not in WORKLOADS]:
        parser.error(f"unknown workloads {workloads}; choose from {WORKLOADS}")
    workloads = [w for w in WORKLOADS if w in workloads]
    sizes = dict(WORKLOAD_N)
    for item in filter(None, args.workload_n.split(",")):
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit():
            parser.error(f"bad --workload-n item {item!r}")
        sizes[name] = int(value)
    libs = [n.strip().lower() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in libs if n not in LIBS]
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {LIBS}")
    libs = [n for n in LIBS if n in libs]
    steps_list = sorted(set(args.steps)) if "main" in workloads else []
    command = "python bench/harness.py " + " ".join(sys.argv[1:])

    peers = [n for n in libs if n in PEERS]
    if peers and not args.skip_install:
        install(args.venv, peers)
    have = installed_peers(args.venv) if peers else {}
    notes = []
    for n in peers:
        if n not in have:
            notes.append(f"{n}: not installed in {args.venv}, skipped")
            libs.remove(n)
    if peers:
        torch = subprocess.run([venv_python(args.venv), "-m", "pip", "show", "-q", "torch"],
                               capture_output=True)
        if torch.returncode == 0:
            notes.append("WARNING: torch is installed in the peers' venv")
    interp = {n: (venv_python(args.venv) if n in PEERS else sys.executable)
              for n in [*libs, "none"]}
    if "mpbackend" in libs:
        # An installed package has its bytecode compiled (pip does it), as the peers'
        # have; a source checkout under PYTHONDONTWRITEBYTECODE would not.
        compileall.compile_dir(os.path.join(ROOT, "mpbackend"), quiet=1)

    results: dict[tuple[str, int], list[dict]] = {}
    caps: dict[tuple[str, int], str] = {}
    started = time.time()
    for steps in steps_list:
        todo = []
        for lib in libs:
            base = [r for r in results.get((lib, steps_list[0]), []) if "error" not in r]
            if steps != steps_list[0] and base:
                projected = (med(base, "loop_s") + med(base, "finish_s")) * steps / base[0][
                    "steps"]
                if projected > args.max_run_seconds:
                    caps[lib, steps] = (f"projected {projected:,.0f} s per run from N="
                                        f"{steps_list[0]:,} > --max-run-seconds "
                                        f"{args.max_run_seconds:.0f}")
                    print(f"{lib} at N={steps:,}: capped, {caps[lib, steps]}", flush=True)
                    continue
            todo.append(lib)
        for rep in range(args.repeat):
            for lib in todo:
                r = run_once(lib, steps, interp[lib])
                results.setdefault((lib, steps), []).append(r)
                msg = r.get("error") or (f"{r['steps_per_s']:,.0f} steps/s, log p50 "
                                         f"{r['log_p50_us']:.1f} µs, rows {r['rows']}")
                print(f"[{time.time() - started:6.0f} s] {lib} N={steps:,} "
                      f"rep {rep + 1}/{args.repeat}: {msg}", flush=True)

    extra = {w: run_workload(w, args, sizes[w], libs, interp, started)
             for w in workloads if w != "main"}
    extra_lines = [line for w, res in extra.items()
                   for line in fmt_workload(w, res, sizes[w], args)]

    every = [*results.items(), *[((lib, 0), rs) for res in extra.values()
                                 for lib, rs in res.items()]]
    versions = {}
    for (lib, _), runs in every:
        for r in runs:
            if "version" in r:
                versions[lib] = f"{r['version']} (python {r['python']})"
    bg = {lib: sorted({p for (name, _), rs in every if name == lib
                       for r in rs for p in r.get("bg_procs", [])}) for lib in libs}
    m = machine()
    lines = [
        "# Benchmarks: mpbackend against other experiment loggers",
        "",
        f"Generated by `{command}` (run from the repository root) on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, in "
        f"{time.time() - started:,.0f} s.",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory']} memory, Linux {m['kernel']}, "
        f"python {m['python']}.",
    ]
    main_lines = [
        "Workload: N steps, each logs a dict of 10 floats (built in the loop). Each row is the "
        f"median of {args.repeat} fresh processes per library and N (runs interleaved).",
        "",
        "- **setup+init**: import of the library plus its init/start (service process start "
        "included).",
        "- **log p50/p99**: how long one step's logging call blocks the training loop, "
        "`perf_counter_ns` around each call (timer overhead included).",
        "- **steps/s**: N / (loop + finish/close); the data is then read back from the "
        "library's store (*rows read back*) and must equal N.",
        "- **main RSS**: peak RSS of the training process (max of /proc VmHWM and 50 ms "
        "psutil samples); **bg RSS**: peak of the summed RSS of its child processes, sampled "
        "every 50 ms from a thread in the training process ('-' = no child process).",
        "",
        *fmt_table(results, libs, steps_list, caps),
        "",
        "## mpbackend against each peer (medians; above 1 = mpbackend better)",
        "",
        *fmt_ratios(results, libs, steps_list),
        "",
    ]
    lines.append("")
    if "main" in workloads:
        lines += main_lines
    lines += extra_lines + ["## Versions and configuration", ""]
    for lib in libs:
        ver = versions.get(lib, "?")
        if lib in have:
            ver = f"{have[lib].split()[0]} {ver}"
        procs = ", ".join(bg[lib]) or "none"
        lines.append(f"- **{lib}** {ver}: {HOW[lib]}. Background processes seen: {procs}.")
    lines += [
        "",
        "mpbackend runs from this checkout, its modules byte-compiled first (compileall), as "
        "pip does for an installed package and for the peers.",
        "",
        "Peers run from their own venv (`bench/.venv-peers`, made by this script; torch is "
        "excluded by a pip constraint). Their environment: "
        + ", ".join(f"`{k}={v}`" for k, v in PEER_ENV.items() if not k.islower()) + ".",
    ]
    verify_notes = sorted({f"{r['lib']}: {r['verify_note']}" for rs in results.values()
                           for r in rs if "verify_note" in r})
    if verify_notes:
        lines += ["", "How rows were read back:", ""] + [f"- {n}" for n in verify_notes]
    if notes or caps:
        lines += ["", "## Not measured", ""] + [f"- {n}" for n in notes]
        lines += [f"- {lib} at N={steps:,}: {why}" for (lib, steps), why in caps.items()]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    raw_path = os.path.join(BENCH, "results",
                            f"harness-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    with open(raw_path, "w") as f:
        json.dump({"command": command, "machine": m,
                   "runs": [r for rs in results.values() for r in rs],
                   "workloads": extra}, f, indent=1)
    print("\n" + text)
    print(f"written to {args.out}; every run in {raw_path}")


if __name__ == "__main__":
    main()
