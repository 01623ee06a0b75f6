"""Differential test: the same random programs under wandb 0.31 (offline) and
mpbackend; report where what they stored differs.

usage: python run.py --n 60 --seed 1000 --out DIR [--jobs 2] [--timeout 120]

Writes DIR/<seed>/{prog.py, ops.json, wandb.json, mp.json, diff.txt} and
DIR/summary.txt (agreement count; first difference of each other program).
Interpreters (environment variables, defaults in brackets):
  WANDB_PY  [required]  a Python with wandb==0.31.0 and numpy installed
  MP_PY     [this Python]
  MP_SRC    [this checkout]  put first on PYTHONPATH for the mpbackend side
  DIFF_TMP  [a temporary directory]  where the runs are written (then removed)
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import gen  # noqa: E402

WANDB_PY = os.environ.get("WANDB_PY", "")
MP_PY = os.environ.get("MP_PY", sys.executable)
MP_SRC = os.environ.get("MP_SRC", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
TMP = os.environ.get("DIFF_TMP", "") or tempfile.mkdtemp(prefix="wandb-diff-")


def _run_one(py, script, prog_path, env_extra, timeout):
    os.makedirs(TMP, exist_ok=True)
    run_dir = tempfile.mkdtemp(dir=TMP)
    env = dict(os.environ)
    env.update(env_extra)
    try:
        p = subprocess.run([py, os.path.join(HERE, script), prog_path, run_dir],
                           capture_output=True, text=True, timeout=timeout, env=env,
                           cwd=run_dir)
        lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
        if p.returncode != 0 or not lines:
            return {"read_error": f"exit {p.returncode}: {p.stderr[-2000:]}",
                    "history": [], "summary": {}, "errors": []}
        return json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        return {"read_error": f"timeout after {timeout}s", "history": [], "summary": {},
                "errors": []}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def run_both(text, timeout=120, keep=None):
    """Run program text under both tools: (wandb json, mp json, differences)."""
    os.makedirs(TMP, exist_ok=True)
    fd, prog_path = tempfile.mkstemp(suffix=".py", dir=TMP)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        cfg = os.path.join(TMP, "wandb-config")
        w = _run_one(WANDB_PY, "run_wandb.py", prog_path,
                     {"WANDB_SILENT": "true", "WANDB_MODE": "offline",
                      "WANDB_CONFIG_DIR": cfg, "WANDB_CACHE_DIR": cfg,
                      "WANDB_DATA_DIR": cfg}, timeout)
        m = _run_one(MP_PY, "run_mp.py", prog_path,
                     {"PYTHONPATH": MP_SRC + os.pathsep + os.environ.get("PYTHONPATH", "")},
                     timeout)
    finally:
        os.unlink(prog_path)
    return w, m, compare.diff(w, m)


def write_case(d, ops, text, w, m, diffs):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "prog.py"), "w") as f:
        f.write(text)
    with open(os.path.join(d, "ops.json"), "w") as f:
        json.dump(ops, f)
    for name, obj in (("wandb.json", w), ("mp.json", m)):
        with open(os.path.join(d, name), "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
    with open(os.path.join(d, "diff.txt"), "w") as f:
        f.write("".join(compare.describe(x) + "\n" for x in diffs) or "agree\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=2, help="programs run at once (max 2)")
    if not WANDB_PY:
        sys.exit("run.py: set WANDB_PY to a Python with wandb==0.31.0 and numpy installed")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--no-nan", action="store_true")
    ap.add_argument("--min-ops", type=int, default=6)
    ap.add_argument("--max-ops", type=int, default=16)
    a = ap.parse_args()
    seeds = list(range(a.seed, a.seed + a.n))

    def one(seed):
        ops = gen.generate(seed, a.min_ops, a.max_ops, nan=not a.no_nan)
        text = gen.render(ops)
        w, m, diffs = run_both(text, a.timeout)
        write_case(os.path.join(a.out, str(seed)), ops, text, w, m, diffs)
        return seed, diffs

    results = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, min(a.jobs, 2))) as ex:
        for seed, diffs in ex.map(one, seeds):
            results[seed] = diffs
            print(f"{seed}: {'agree' if not diffs else compare.describe(diffs[0])}",
                  flush=True)
    agree = [s for s in seeds if not results[s]]
    lines = [f"{len(agree)} of {len(seeds)} programs agree (seeds {seeds[0]}..{seeds[-1]})", ""]
    for s in seeds:
        if results[s]:
            lines.append(f"{s}  ({len(results[s])} differences)  first: "
                         f"{compare.describe(results[s][0])}")
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:1]))


if __name__ == "__main__":
    main()
