"""Shared by run_wandb.py and run_mp.py: run a program statement by statement.

Each top-level statement runs on its own; an exception is recorded (statement
index, type, message) and the program goes on, so one refused call does not
hide what the rest stored. Also: JSON output that keeps NaN/inf.
"""
import ast
import contextlib
import io
import json
import sys
import warnings


def run_program(text, wandb_module, run_dir):
    tree = ast.parse(text)
    ns = {"wandb": wandb_module, "DIR": run_dir, "__name__": "__prog__"}
    errors = []
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        warnings.simplefilter("always")
        for i, stmt in enumerate(tree.body):
            code = compile(ast.Module(body=[stmt], type_ignores=[]), "prog.py", "exec")
            try:
                exec(code, ns)
            except Exception as exc:  # noqa: BLE001
                errors.append({"stmt": i, "line": stmt.lineno, "type": type(exc).__name__,
                               "msg": str(exc)[:300]})
                if i == 0:  # init failed: nothing else can run
                    break
    return {"errors": errors, "warnings": [str(w.message)[:300] for w in caught],
            "output": out.getvalue()[-4000:]}


def strip_meta(d, drop=("_runtime", "_timestamp", "_wandb")):
    return {k: v for k, v in d.items() if k not in drop}


def dump(obj):
    sys.stdout.write(json.dumps(obj, allow_nan=True, sort_keys=False, default=repr) + "\n")
