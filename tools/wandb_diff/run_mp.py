"""Run a program under mpbackend (``import mpbackend as wandb``) and print what it
stored, in run_wandb.py's JSON form.

usage: PYTHONPATH=<mpbackend checkout> <mpbackend venv>/bin/python run_mp.py PROG.py RUN_DIR

Reads back with mpbackend.Api(RUN_DIR).runs("p")[0]: scan_history() rows (dotted
columns; a dict value, if any, flattened to dotted keys as well) and .summary
(nested dict), without _runtime/_timestamp.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def flatten_row(row, prefix=""):
    out = {}
    for k, v in row.items():
        key = prefix + k
        if isinstance(v, dict) and v:
            out.update(flatten_row(v, key + "."))
        else:
            out[key] = v
    return out


def main():
    prog, run_dir = sys.argv[1], sys.argv[2]
    os.makedirs(run_dir, exist_ok=True)
    import mpbackend
    with open(prog) as f:
        text = f.read()
    res = harness.run_program(text, mpbackend, run_dir)
    try:
        api = mpbackend.Api(run_dir)
        runs = api.runs("p")
        if len(runs) != 1:
            raise RuntimeError(f"expected one run, found {runs} (errors: {api.errors})")
        run = runs[0]
        history = [flatten_row(harness.strip_meta(r)) for r in run.scan_history()]
        summary = harness.strip_meta(dict(run.summary))
    except Exception as exc:  # noqa: BLE001
        res["read_error"] = f"{type(exc).__name__}: {exc}"
        history, summary = [], {}
    res["history"] = history
    res["summary"] = summary
    res["tool"] = "mpbackend " + os.path.dirname(mpbackend.__file__)
    harness.dump(res)


if __name__ == "__main__":
    main()
