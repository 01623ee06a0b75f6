"""Seeded random wandb-style logging programs.

A program is a list of ops (JSON-able lists); ``render`` turns it into a script
body that uses only ``wandb.`` / ``run.`` calls, so the same text runs under
``import wandb`` (0.31, offline) and ``import mpbackend as wandb``. The runner
provides ``wandb`` and ``DIR`` (the run directory).

Ops:
  ["log", data, step_or_None, commit_or_None]
  ["define", name, {kwargs}]
  ["sset", key, value]          run.summary[key] = value
  ["supdate", {data}]           run.summary.update(data)
  ["sdel", key]                 del run.summary[key] (KeyError ignored)

Values: NaN / inf are encoded as {"__float__": "nan"|"inf"|"-inf"} in ops.
"""
import argparse
import json
import math
import random

KEYS = ["a", "b", "loss", "acc", "val/loss", "val/acc", "n.a", "epoch", "_foo", "n"]
METRIC_NAMES = ["loss", "val/*", "*", "acc", "val/loss", "epoch", "n.a"]
STEP_METRICS = ["epoch", "_step", "a", "acc"]
SUMMARY_OPS = ["min", "max", "mean", "first", "last", "none"]

NAN = {"__float__": "nan"}
INF = {"__float__": "inf"}
NINF = {"__float__": "-inf"}


def rand_value(rng, key, nan=True):
    r = rng.random()
    if key == "n" and r < 0.8:
        return {"a": rng.randint(-3, 5), "b": {"c": rng.randint(0, 9)}}
    if r < 0.40:
        return rng.randint(-5, 10)
    if r < 0.70:
        return round(rng.uniform(-2, 5), 2)
    if r < 0.74 and nan:
        return NAN
    if r < 0.77:
        return rng.choice([INF, NINF])
    if r < 0.81:
        return None
    if r < 0.85:
        return rng.choice(["x", "y"])
    if r < 0.88:
        return rng.choice([True, False])
    if r < 0.92:
        return [rng.randint(0, 3), rng.randint(0, 3)]
    return {"a": rng.randint(-3, 5), "b": {"c": rng.randint(0, 9)}}


def rand_data(rng, nan=True):
    keys = rng.sample(KEYS, rng.choice([1, 1, 2, 2, 3]))
    return {k: rand_value(rng, k, nan) for k in keys}


def rand_define(rng):
    name = rng.choice(METRIC_NAMES)
    kw = {}
    if rng.random() < 0.35:
        kw["step_metric"] = rng.choice(STEP_METRICS)
        if rng.random() < 0.25:
            kw["step_sync"] = rng.choice([True, False])
    if rng.random() < 0.1:
        kw["hidden"] = rng.choice([True, False])
    if rng.random() < 0.7:
        ops = rng.sample(SUMMARY_OPS, rng.choice([1, 1, 2, 3]))
        kw["summary"] = ",".join(ops)
    if rng.random() < 0.15:
        kw["overwrite"] = rng.choice([True, False])
    return ["define", name, kw]


def generate(seed, min_ops=6, max_ops=16, nan=True):
    rng = random.Random(seed)
    ops = []
    step = 0  # rough estimate of wandb's step, to pick explicit steps near it
    for _ in range(rng.randint(min_ops, max_ops)):
        r = rng.random()
        if r < 0.62:
            st = None
            commit = None
            if rng.random() < 0.25:
                st = max(0, step + rng.choice([-2, -1, 0, 0, 1, 1, 2, 3]))
            if rng.random() < 0.25:
                commit = rng.choice([False, False, True])
            ops.append(["log", rand_data(rng, nan), st, commit])
            if st is not None and st > step:
                step = st
            elif commit is not False:
                step += 1
        elif r < 0.78:
            ops.append(rand_define(rng))
        elif r < 0.87:
            k = rng.choice(KEYS)
            ops.append(["sset", k, rand_value(rng, k, nan)])
        elif r < 0.93:
            ops.append(["supdate", rand_data(rng, nan)])
        else:
            ops.append(["sdel", rng.choice(KEYS)])
    return ops


def lit(v):
    """A Python literal for an op value."""
    if isinstance(v, dict) and set(v) == {"__float__"}:
        texts = {"nan": 'float("nan")', "inf": 'float("inf")', "-inf": 'float("-inf")'}
        return texts[v["__float__"]]
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {lit(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(lit(x) for x in v) + "]"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return f'float("{v}")'
    return repr(v)


def render_op(op):
    kind = op[0]
    if kind == "log":
        _, data, step, commit = op
        args = [lit(data)]
        if step is not None:
            args.append(f"step={step}")
        if commit is not None:
            args.append(f"commit={commit}")
        return f"run.log({', '.join(args)})"
    if kind == "define":
        _, name, kw = op
        args = [repr(name)] + [f"{k}={v!r}" for k, v in kw.items()]
        return f"run.define_metric({', '.join(args)})"
    if kind == "sset":
        return f"run.summary[{op[1]!r}] = {lit(op[2])}"
    if kind == "supdate":
        return f"run.summary.update({lit(op[1])})"
    if kind == "sdel":
        return f"try:\n    del run.summary[{op[1]!r}]\nexcept KeyError:\n    pass"
    raise ValueError(op)


def render(ops):
    lines = ['run = wandb.init(project="p", mode="offline", dir=DIR)']
    lines += [render_op(op) for op in ops]
    lines.append("run.finish()")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-ops", type=int, default=6)
    ap.add_argument("--max-ops", type=int, default=16)
    ap.add_argument("--no-nan", action="store_true", help="never log NaN")
    ap.add_argument("--no-goal", action="store_true", default=True,
                    help="never use define_metric(goal=) (default; wandb 0.31 lacks it)")
    ap.add_argument("--no-best", action="store_true", default=True,
                    help="never use summary='best' (default; needs goal)")
    ap.add_argument("--json", action="store_true", help="print the ops, not the script")
    a = ap.parse_args()
    ops = generate(a.seed, a.min_ops, a.max_ops, nan=not a.no_nan)
    print(json.dumps(ops) if a.json else render(ops), end="" if not a.json else "\n")


if __name__ == "__main__":
    main()
