"""Compare what wandb and mpbackend stored (the JSON of run_wandb.py / run_mp.py).

- history: rows matched by _step; each row's keys and values.
- summary: both nested dicts flattened to key paths (a literal key "n.a" and the
  path n -> a stay distinct: shown as ["n.a"] and n.a).
- errors: which statements raised (by statement index and exception type).
Values: NaN equals NaN, inf equals inf, 1 equals 1.0, floats within 1e-9
relative, bools only equal bools, lists element by element.
"""
import json
import math


def same(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(b, float) and math.isnan(b):
            return False
        if math.isinf(a) or math.isinf(b):
            return a == b
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def seg(k):
    return f'["{k}"]' if "." in k else k


def flatten_paths(d, prefix=()):
    out = {}
    for k, v in d.items():
        p = prefix + (k,)
        if isinstance(v, dict) and v:
            out.update(flatten_paths(v, p))
        else:
            out[p] = v
    return out


def path_str(p):
    return ".".join(seg(k) for k in p)


def fmt(v):
    return json.dumps(v, allow_nan=True)


MISSING = "<absent>"


def diff(w, m):
    """A list of differences, each a dict: section, key, step (history), wandb, mp."""
    out = []
    for tool, res in (("wandb", w), ("mp", m)):
        if res.get("read_error") or res.get("incomplete"):
            out.append({"section": "read", "key": tool,
                        "wandb": w.get("read_error") or w.get("incomplete"),
                        "mp": m.get("read_error")})
    we = {(e["stmt"], e["type"]) for e in w.get("errors", [])}
    me = {(e["stmt"], e["type"]) for e in m.get("errors", [])}
    for stmt, typ in sorted(we ^ me):
        out.append({"section": "errors", "key": f"stmt {stmt}",
                    "wandb": typ if (stmt, typ) in we else MISSING,
                    "mp": typ if (stmt, typ) in me else MISSING})
    wh = {r.get("_step"): r for r in w.get("history", [])}
    mh = {r.get("_step"): r for r in m.get("history", [])}
    for step in sorted(set(wh) | set(mh), key=lambda s: (s is None, s)):
        a, b = wh.get(step), mh.get(step)
        if a is None or b is None:
            out.append({"section": "history", "step": step, "key": "<row>",
                        "wandb": MISSING if a is None else a, "mp": MISSING if b is None else b})
            continue
        for k in sorted(set(a) | set(b)):
            if k in a and k in b and same(a[k], b[k]):
                continue
            out.append({"section": "history", "step": step, "key": k,
                        "wandb": a.get(k, MISSING), "mp": b.get(k, MISSING)})
    ws, ms = flatten_paths(w.get("summary", {})), flatten_paths(m.get("summary", {}))
    for p in sorted(set(ws) | set(ms)):
        if p in ws and p in ms and same(ws[p], ms[p]):
            continue
        out.append({"section": "summary", "key": path_str(p), "top": p[0],
                    "wandb": ws.get(p, MISSING), "mp": ms.get(p, MISSING)})
    return out


def describe(d):
    where = d["section"] + (f" step {d['step']}" if "step" in d else "") + f" {d['key']}"
    return f"{where}: wandb={fmt(d['wandb'])} mp={fmt(d['mp'])}"
