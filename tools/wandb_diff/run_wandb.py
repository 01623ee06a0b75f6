"""Run a program under wandb 0.31 (offline) and print what it stored, as JSON.

usage: <wandb venv>/bin/python run_wandb.py PROG.py RUN_DIR

Reads back the offline run file (RUN_DIR/wandb/offline-run-*/run-*.wandb) record
by record (wandb_reader.py): each history record is a row (items keyed by
nested_key paths, or key); summary records are applied in order (update: set the
value at the nested_key path; remove: delete it) to get the final summary.

Output: {"history": [rows: {dotted key: value}], "summary": nested dict,
"errors": [...], "warnings": [...]}, without _runtime/_timestamp/_wandb.
A row keeps wandb's nested paths flattened to dotted keys, as mpbackend's
history columns are (the literal key "n.a" and the path n -> a then coincide).
"""
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import wandb_reader  # noqa: E402


def item_path(item):
    return list(item.nested_key) if len(item.nested_key) else [item.key]


def item_value(item):
    if item.value_json:
        return json.loads(item.value_json)
    # older typed fields (unused by wandb-core 0.31, kept in case)
    which = item.WhichOneof("value") if hasattr(item, "WhichOneof") else None
    if which:
        return getattr(item, which)
    return None


def flatten_row(row, prefix=""):
    out = {}
    for k, v in row.items():
        key = prefix + k
        if isinstance(v, dict) and v:
            out.update(flatten_row(v, key + "."))
        else:
            out[key] = v
    return out


def set_path(doc, path, value):
    cur = doc
    for p in path[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[path[-1]] = value


def del_path(doc, path):
    cur = doc
    for p in path[:-1]:
        cur = cur.get(p)
        if not isinstance(cur, dict):
            return
    cur.pop(path[-1], None)


def read_run(run_dir):
    files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
    if len(files) != 1:
        raise RuntimeError(f"expected one run file, found {files}")
    history, summary = [], {}
    for rec in wandb_reader.iter_records(files[0]):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row = {}
            for item in rec.history.item:
                path = item_path(item)
                if path[0] in ("_runtime", "_timestamp"):
                    continue
                row[".".join(path)] = item_value(item)
            history.append(flatten_row(row))
        elif kind == "summary":
            for item in rec.summary.update:
                path = item_path(item)
                if path[0] in ("_runtime", "_timestamp", "_wandb"):
                    continue
                set_path(summary, path, item_value(item))
            for item in rec.summary.remove:
                del_path(summary, item_path(item))
    return history, summary


def wait_complete(run_dir, timeout=30.0):
    """wandb-core may still be writing the run file when finish() returns (seen:
    the history record missing at read time, present a moment later). Wait until
    the file holds an exit record and its size has stopped changing."""
    import time
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        files = glob.glob(os.path.join(run_dir, "wandb", "offline-run-*", "run-*.wandb"))
        if len(files) == 1:
            size = os.path.getsize(files[0])
            try:
                kinds = [r.WhichOneof("record_type") for r in wandb_reader.iter_records(files[0])]
            except Exception:  # noqa: BLE001  (a record being written)
                kinds = []
            if "exit" in kinds and size == last:
                return True
            last = size
        time.sleep(0.2)
    return False


def main():
    prog, run_dir = sys.argv[1], sys.argv[2]
    os.makedirs(run_dir, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = "offline"
    import wandb
    with open(prog) as f:
        text = f.read()
    res = harness.run_program(text, wandb, run_dir)
    try:
        wandb.teardown()  # stop wandb-core so it has written everything
    except Exception as exc:  # noqa: BLE001
        res["teardown_error"] = repr(exc)
    if not wait_complete(run_dir):
        res["incomplete"] = True
    try:
        history, summary = read_run(run_dir)
    except Exception as exc:  # noqa: BLE001
        res["read_error"] = f"{type(exc).__name__}: {exc}"
        history, summary = [], {}
    res["history"] = history
    res["summary"] = harness.strip_meta(summary)
    res["tool"] = "wandb " + wandb.__version__
    harness.dump(res)


if __name__ == "__main__":
    main()
