"""Label the programs of a run.py output directory on which wandb and mpbackend
disagree, by shrinking each to a minimal reproducer.

usage: python classify.py DIR [--shrink] [--jobs 2] [--timeout 120]

--shrink: for each disagreeing DIR/<seed>, drop ops (halves, quarters, ... then one
at a time, repeated until nothing more can go) while the difference persists,
then simplify what is left (drop dict keys, define_metric arguments, summary ops,
step/commit arguments, nested sub-keys) under the same test. "The difference
persists" means: the shrunk program still differs on the same section and key as
the original program's first difference (history differences by key, any step).
Writes DIR/<seed>/{min.py, min_ops.json, min_wandb.json, min_mp.json, min_diff.txt}.

Without --shrink, the min_* files already written are used. Then the minimal
reproducers are grouped by shape (op kinds, keys, value types, define_metric
arguments, and the kind of difference) and labelled with a likely cause
(LABELS below), written to DIR/classes.txt and printed.
"""
import argparse
import concurrent.futures as cf
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import gen  # noqa: E402
import run as runner  # noqa: E402


def target_of(d):
    return (d["section"], d.get("top", d["key"]) if d["section"] == "summary" else d["key"])


def still_differs(target, diffs):
    return any(target_of(d) == target for d in diffs)


class Shrinker:
    def __init__(self, target, timeout):
        self.target = target
        self.timeout = timeout
        self.cache = {}
        self.runs = 0

    def test(self, ops):
        key = json.dumps(ops)
        if key not in self.cache:
            self.runs += 1
            w, m, diffs = runner.run_both(gen.render(ops), self.timeout)
            self.cache[key] = (still_differs(self.target, diffs), w, m, diffs)
        return self.cache[key][0]

    def drop_ops(self, ops):
        n = max(1, len(ops) // 2)
        while True:
            i, changed = 0, False
            while i < len(ops):
                cand = ops[:i] + ops[i + n:]
                if cand != ops and self.test(cand):
                    ops, changed = cand, True
                else:
                    i += n
            if n == 1 and not changed:
                return ops
            if not changed or n > 1:
                n = max(1, n // 2)

    def variants(self, op):
        """Simpler versions of one op, simplest first."""
        kind = op[0]
        out = []
        if kind == "log":
            _, data, step, commit = op
            for k in data:
                if len(data) > 1:
                    out.append(["log", {x: v for x, v in data.items() if x != k}, step, commit])
            if step is not None:
                out.append(["log", data, None, commit])
            if commit is not None:
                out.append(["log", data, step, None])
            for k, v in data.items():
                for sv in simpler_values(v):
                    out.append(["log", {**data, k: sv}, step, commit])
        elif kind == "supdate":
            data = op[1]
            for k in data:
                if len(data) > 1:
                    out.append(["supdate", {x: v for x, v in data.items() if x != k}])
            for k, v in data.items():
                for sv in simpler_values(v):
                    out.append(["supdate", {**data, k: sv}])
        elif kind == "sset":
            for sv in simpler_values(op[2]):
                out.append(["sset", op[1], sv])
        elif kind == "define":
            _, name, kw = op
            for k in kw:
                out.append(["define", name, {x: v for x, v in kw.items() if x != k}])
            s = kw.get("summary")
            if s and "," in s:
                parts = s.split(",")
                for p in parts:
                    rest = ",".join(x for x in parts if x != p)
                    out.append(["define", name, {**kw, "summary": rest}])
        return out

    def simplify(self, ops):
        changed = True
        while changed:
            changed = False
            for i in range(len(ops)):
                for v in self.variants(ops[i]):
                    cand = ops[:i] + [v] + ops[i + 1:]
                    if self.test(cand):
                        ops, changed = cand, True
                        break
        return ops


def simpler_values(v):
    """Simpler values to try in place of v (only structural simplifications)."""
    if isinstance(v, dict) and set(v) != {"__float__"}:
        out = []
        for k in v:
            if len(v) > 1:
                out.append({x: y for x, y in v.items() if x != k})
        for k, x in v.items():
            for sx in simpler_values(x):
                out.append({**v, k: sx})
        return out
    if isinstance(v, float) and v != int(v):
        return [int(v) if int(v) != 0 else 1]
    return []


def shrink_case(d, timeout):
    with open(os.path.join(d, "ops.json")) as f:
        ops = json.load(f)
    with open(os.path.join(d, "wandb.json")) as f:
        w = json.load(f)
    with open(os.path.join(d, "mp.json")) as f:
        m = json.load(f)
    diffs = compare.diff(w, m)
    if not diffs:
        return None
    s = Shrinker(target_of(diffs[0]), timeout)
    if not s.test(ops):  # not reproducible (flaky): keep the whole program
        small = ops
    else:
        small = s.simplify(s.drop_ops(ops))
        small = s.drop_ops(small)
    s.test(small)
    _, w2, m2, d2 = s.cache[json.dumps(small)]
    with open(os.path.join(d, "min.py"), "w") as f:
        f.write(gen.render(small))
    with open(os.path.join(d, "min_ops.json"), "w") as f:
        json.dump(small, f)
    for name, obj in (("min_wandb.json", w2), ("min_mp.json", m2)):
        with open(os.path.join(d, name), "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
    with open(os.path.join(d, "min_diff.txt"), "w") as f:
        f.write(f"target: {target_of(diffs[0])}  ({s.runs} runs, {len(ops)} -> {len(small)} ops)\n")
        f.write("".join(compare.describe(x) + "\n" for x in d2) or "agree\n")
    return small


# ---------------------------------------------------------------- grouping

def vtype(v):
    if isinstance(v, dict) and set(v) == {"__float__"}:
        return v["__float__"]
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{vtype(x)}" for k, x in v.items()) + "}"
    return type(v).__name__


def op_shape(op):
    kind = op[0]
    if kind == "log":
        _, data, step, commit = op
        s = "log(" + ",".join(f"{k}:{vtype(v)}" for k, v in data.items())
        if step is not None:
            s += ",step"
        if commit is not None:
            s += f",commit={commit}"
        return s + ")"
    if kind == "define":
        kw = dict(op[2])
        return f"define({op[1]}," + ",".join(f"{k}={v}" for k, v in sorted(kw.items())) + ")"
    if kind == "sset":
        return f"summary[{op[1]}]={vtype(op[2])}"
    if kind == "supdate":
        return "summary.update(" + ",".join(f"{k}:{vtype(v)}" for k, v in op[1].items()) + ")"
    if kind == "sdel":
        return f"del summary[{op[1]}]"
    return kind


def has_nested_and_literal(ops):
    nested = literal = False

    def walk(data):
        nonlocal nested, literal
        for k, v in data.items():
            if k == "n.a":
                literal = True
            if k == "n" and isinstance(v, dict) and "a" in v:
                nested = True
    for op in ops:
        if op[0] in ("log", "supdate"):
            walk(op[1])
        elif op[0] == "sset":
            walk({op[1]: op[2]})
        elif op[0] == "define" and op[1] == "n.a":
            literal = True
    return nested and literal


def label(ops, diffs):
    """A likely cause, from the minimal program's shape (first rule that fits).
    The rules were written after reading the minimal reproducers of
    run.py --n 60 --seed 1000 (wandb 0.31.0); anything else is "other"."""
    kinds = [o[0] for o in ops]
    defines = [o for o in ops if o[0] == "define"]
    globs = [d for d in defines if "*" in d[1]]
    logged = {}
    for o in ops:
        if o[0] == "log":
            for k, v in o[1].items():
                logged.setdefault(k, []).append(vtype(v))
    if has_nested_and_literal(ops):
        if any(d["section"] == "history" and d["mp"] == compare.MISSING for d in diffs):
            return ("nested {'n':{...}} then literal 'n.a' in the same row: mpbackend's row "
                    "loses n's other sub-keys (n.b.c)")
        return "nested {'n':{'a':..}} and literal 'n.a' in one run: mpbackend shares one place"
    if ("sset" in kinds or "supdate" in kinds) and defines:
        return ("summary[k] set before k has a (materialised) definition, then define/log: "
                "wandb aggregates ('first' null), mpbackend stores plain")
    if len(globs) > 1:
        return "overlapping globs (wandb's choice not deterministic)"
    if any("step_metric" in g[2] for g in globs):
        return "step metric filled into a row: wandb does not apply the glob's summary ops to it"
    for ts in logged.values():
        if any(t.startswith("{") for t in ts) and any(not t.startswith("{") for t in ts):
            return "key changes between scalar and dict"
    if any(t in ("nan", "str", "bool") for ts in logged.values() for t in ts) and defines:
        return "NaN/str/bool in min/max/mean (mpbackend skips by choice)"
    if "sdel" in kinds:
        return "del summary[k]"
    if any(o[0] == "log" and o[2] is not None for o in ops):
        return "explicit step="
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--shrink", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    cases = sorted(int(s) for s in os.listdir(a.dir) if s.isdigit())
    bad = []
    for s in cases:
        with open(os.path.join(a.dir, str(s), "diff.txt")) as f:
            if f.read().strip() != "agree":
                bad.append(s)
    if a.shrink:
        with cf.ThreadPoolExecutor(max_workers=max(1, min(a.jobs, 2))) as ex:
            futs = {ex.submit(shrink_case, os.path.join(a.dir, str(s)), a.timeout): s for s in bad}
            for fut in cf.as_completed(futs):
                small = fut.result()
                print(f"{futs[fut]}: shrunk to {len(small)} ops", flush=True)
    groups = {}
    for s in bad:
        d = os.path.join(a.dir, str(s))
        if not os.path.exists(os.path.join(d, "min_ops.json")):
            continue
        with open(os.path.join(d, "min_ops.json")) as f:
            ops = json.load(f)
        with open(os.path.join(d, "min_wandb.json")) as f:
            w = json.load(f)
        with open(os.path.join(d, "min_mp.json")) as f:
            m = json.load(f)
        diffs = compare.diff(w, m)
        shape = " ; ".join(op_shape(o) for o in ops)
        groups.setdefault(label(ops, diffs), {}).setdefault(shape, []).append((s, ops, diffs))
    lines = [f"{len(cases) - len(bad)} of {len(cases)} agree; {len(bad)} disagree", ""]
    for lab, shapes in sorted(groups.items(), key=lambda kv: -sum(len(v) for v in kv[1].values())):
        n = sum(len(v) for v in shapes.values())
        lines.append(f"== {lab}: {n} program(s)")
        for shape, members in sorted(shapes.items(), key=lambda kv: -len(kv[1])):
            seeds = [x[0] for x in members]
            s, ops, diffs = members[0]
            lines.append(f"  -- shape: {shape}   [{len(seeds)}: {', '.join(map(str, seeds))}]")
            lines += ["     " + line for line in gen.render(ops).splitlines()[1:-1]]
            lines += ["     => " + compare.describe(x) for x in diffs]
        lines.append("")
    with open(os.path.join(a.dir, "classes.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
