"""Property-based tests: random sequences of run operations against a reference model.

The model below is written from wandb 0.31's rules as found by running the same
programs under wandb (offline) and reading back what it stored (README, "The run
API"), not from the code that implements them:

* ``log(d)`` commits a row at the current step and moves the step on; with
  ``commit=False`` it merges into the pending row; with ``step=s``, ``s`` equal
  to the current step merges, a larger ``s`` commits the pending row first and
  moves to ``s``, a smaller one is dropped; with a step, ``commit`` defaults to
  False; ``log({})`` commits the pending row, or an empty row of its own (it
  takes a step), and so does ``log({}, step=s, commit=True)``; an empty pending
  row committed by a later step or the finish is not stored;
* the summary is what the committed rows and the user's sets wrote, in order (the
  last write wins): a row sets each of its keys to its value, or to
  ``{"min": .., "max": .., "mean": .., "best": .., "first": .., "last": ..}`` as
  ``define_metric`` asks, over every value the key had since the run began
  (first and last of any value, None too; ``"none"``: the key is not written); a
  NaN set on the summary is stored as null, and a key set on the summary is stored
  plain (no ops) from then on; an exact name wins over a glob, a longer
  glob over a shorter one; a later ``define_metric`` of a name merges into the
  earlier one (ops add up, ops given without ``"none"`` drop an earlier one, what
  a call leaves out stays); ``step_metric`` (with step_sync) fills the step
  metric's last numeric value, or 0, into rows that lack it;
* ``config.update`` merges, and without ``allow_val_change`` a changed value is
  refused (ConfigError) and nothing changes.

Each test function uses ONE service (started by the first ``init()``, reused by
every example; the ``rundir`` fixture tears it down), a new run per example, and
reads the stored run back with ``RunReader`` once the run is finished.
"""

from __future__ import annotations

import fnmatch
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpbackend

pytestmark = pytest.mark.timeout(120)

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.function_scoped_fixture])

KEYS = ["a", "b", "b2", "c"]
METRIC_NAMES = ["a", "b", "b2", "b*", "b2*"]  # globs of different lengths
SUMMARY_KEYS = ["a", "b", "s"]
CONFIG_KEYS = ["lr", "bs", "opt"]
OPS = ["min", "max", "mean", "best", "first", "last", "none"]


# -- the reference model ------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and not (isinstance(value, float) and math.isnan(value))


class Model:
    """One run as wandb's rules say it should end up."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.step = 0  # the step the next committed row gets
        self.pending: dict[str, Any] | None = None
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.values: dict[str, list[Any]] = {}  # every committed value of each key
        self.step_values: dict[str, Any] = {}  # each step metric's last numeric value
        self.defs: dict[str, dict[str, Any]] = {}
        self.tree: dict[str, Any] = {}  # the summary, as written in order
        self.explicit: set[str] = set()  # keys set on the summary while defined: plain after
        # Where a key's ``first`` starts in ``values``: ``del summary[k]`` restarts it.
        self.first_from: dict[str, int] = {}
        self.config = dict(config)

    # -- history --

    def log(self, data: dict[str, Any], step: int | None, commit: bool | None) -> None:
        if step is not None:
            if step < self.step:
                return  # dropped (with a warning)
            if step > self.step:
                self._commit_pending()
                self.step = step
            self.pending = {**(self.pending or {}), **data}
            if commit:
                row, self.pending = self.pending, None
                self._commit(row)  # committed by the call: an empty row too
            return
        if commit is False:
            self.pending = {**(self.pending or {}), **data}
            return
        row = {**(self.pending or {}), **data}
        self.pending = None
        self._commit(row)  # an empty row too

    def finish(self) -> None:
        self._commit_pending()

    def _commit_pending(self) -> None:
        row, self.pending = self.pending, None
        if row:
            self._commit(row)

    def _commit(self, data: dict[str, Any]) -> None:
        row = dict(data)
        metrics = {d["step_metric"] for d in self.defs.values() if d["step_metric"]}
        for x in metrics:
            if x in row and type(row[x]) in (int, float):  # NaN too
                self.step_values[x] = row[x]
        filled = set()
        for key in list(data):
            d = self.resolve(key)
            x = d and d.get("step_metric")
            if x and d.get("step_sync") and x not in row:
                row[x] = self.step_values.get(x, 0)
                filled.add(x)
        for key, value in row.items():
            self.values.setdefault(key, []).append(value)
        for key, value in row.items():
            # Plain: a key set on the summary while a definition applied to it, and a
            # step metric filled in by a glob's definition (its own definition shapes it).
            plain = key in self.explicit or (key in filled and key not in self.defs)
            d = None if plain else self.resolve(key)
            if value is None and not (d and d["ops"]):
                continue  # a None leaves the summary as it was, unless ops are defined
            shaped = value if plain else self.shaped(key, value)
            if shaped is not _LEFT_OUT:
                self.tree[key] = shaped
        self.tree["_step"] = self.step
        self.rows.append((self.step, row))
        self.step += 1

    # -- metrics and summary --

    def define(self, name: str, ops: list[str], goal: str | None,
               step_metric: str | None) -> None:
        old = self.defs.get(name, {"ops": [], "goal": None, "step_metric": None,
                                   "step_sync": None})
        new = dict(old)
        kept = old["ops"] if not ops or "none" in ops else [o for o in old["ops"] if o != "none"]
        new["ops"] = kept + [op for op in ops if op not in kept]
        if goal is not None:
            new["goal"] = goal
        if step_metric is not None:
            new["step_metric"] = step_metric
        if new["step_metric"] and new["step_sync"] is None:
            new["step_sync"] = True
        self.defs[name] = new

    def resolve(self, key: str) -> dict[str, Any] | None:
        if key in self.defs:
            return self.defs[key]
        if key.startswith("_"):
            return None
        globs = [g for g in self.defs if ("*" in g or "?" in g) and fnmatch.fnmatchcase(key, g)]
        if not globs:
            return None
        return self.defs[max(globs, key=len)]

    def shaped(self, key: str, value: Any) -> Any:
        d = self.resolve(key)
        ops = d["ops"] if d is not None else []
        if not ops:
            return value
        if "none" in ops:
            return _LEFT_OUT
        seen = self.values.get(key, [])
        firsts = seen[self.first_from.get(key, 0):]
        numbers = [v for v in seen if _is_number(v)]
        shaped: dict[str, Any] = {}
        for op in ops:
            if op == "last":
                shaped["last"] = value
            elif op == "first":
                shaped["first"] = firsts[0] if firsts else value
            elif op == "mean" and numbers:
                shaped["mean"] = sum(numbers) / len(numbers)
            elif op == "best" and numbers:
                shaped["best"] = (min if d["goal"] == "minimize" else max)(numbers)
            elif op in ("min", "max") and numbers:
                shaped[op] = (min if op == "min" else max)(numbers)
        return shaped

    def summary(self) -> dict[str, Any]:
        return dict(self.tree)


_LEFT_OUT = object()  # shaped(): summary="none"


# -- comparing ------------------------------------------------------------------------------


def _same(a: Any, b: Any, strict: bool = True) -> bool:
    """Equal values; NaN equals NaN; dicts and lists item by item; types must match
    when ``strict`` (floats may differ by rounding in a mean when not)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], strict) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, strict) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if strict:
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b) and not (math.isinf(a) or math.isinf(b)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _visible(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary without the time-dependent keys."""
    return {k: v for k, v in summary.items() if k not in ("_runtime", "_timestamp")}


def _history(run_dir: str) -> tuple[dict, list[tuple[int, dict[str, Any]]]]:
    with mpbackend.RunReader(run_dir) as reader:
        info = reader.info()
        rows = [(row["_step"], {k: v for k, v in row.items() if not k.startswith("_")})
                for row in reader.history()]
    return info, rows


# -- strategies ------------------------------------------------------------------------------

values = st.one_of(
    st.integers(-5, 5),
    st.floats(-10, 10, allow_nan=False, width=32).map(float),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -0.0]),
)
data_dicts = st.dictionaries(st.sampled_from(KEYS), values, max_size=3)

log_op = st.tuples(st.just("log"), data_dicts,
                   st.one_of(st.none(), st.integers(-2, 3)),  # step relative to the current
                   st.sampled_from([None, True, False]))
summary_op = st.tuples(st.just("summary"), st.sampled_from(SUMMARY_KEYS), values)
delete_op = st.tuples(st.just("delete"), st.sampled_from(["a", "s"]))
config_op = st.tuples(st.just("config"),
                      st.dictionaries(st.sampled_from(CONFIG_KEYS),
                                      st.one_of(st.integers(0, 3), st.sampled_from(["x", "y"])),
                                      max_size=2),
                      st.booleans())
define_op = st.tuples(st.just("define"), st.sampled_from(METRIC_NAMES),
                      st.lists(st.sampled_from(OPS), max_size=3, unique=True),
                      st.sampled_from([None, "minimize", "maximize"]),
                      st.sampled_from([None, None, "c"]))
check_op = st.just(("check",))
# Mostly log() calls; the kind is drawn first so the weights hold.
KIND_WEIGHTS = {"log": 12, "define": 3, "summary": 2, "delete": 1, "config": 1, "check": 1}
BY_KIND = {"log": log_op, "define": define_op, "summary": summary_op, "delete": delete_op,
           "config": config_op, "check": check_op}
operation = st.sampled_from([k for k, w in KIND_WEIGHTS.items() for _ in range(w)]).flatmap(
    BY_KIND.__getitem__)
operations = st.lists(operation, min_size=10, max_size=60)
initial_config = st.dictionaries(st.sampled_from(CONFIG_KEYS), st.integers(0, 3), max_size=2)


def _apply(run: mpbackend.Run, model: Model, op: tuple) -> None:
    kind = op[0]
    if kind == "log":
        _, data, delta, commit = op
        step = None if delta is None else max(0, model.step + delta)
        run.log(dict(data), step=step, commit=commit)
        model.log(dict(data), step, commit)
    elif kind == "summary":
        _, key, value = op
        run.summary[key] = value
        model.tree[key] = None if value != value else value  # a NaN set is stored as null
        d = model.resolve(key)
        if d and d["ops"] and (key in model.defs or key in model.values):
            model.explicit.add(key)  # a definition applies already: plain from now on

    elif kind == "delete":
        _, key = op
        if key in model.summary():
            del run.summary[key]
            model.tree.pop(key)
            model.first_from[key] = len(model.values.get(key, []))  # first starts again
        else:
            with pytest.raises(KeyError):
                del run.summary[key]
    elif kind == "config":
        _, data, allow = op
        changes = any(k in model.config and model.config[k] != v for k, v in data.items())
        if changes and not allow:
            with pytest.raises(mpbackend.ConfigError):
                run.config.update(data)
        else:
            run.config.update(data, allow_val_change=allow)
            model.config.update(data)
    elif kind == "define":
        _, name, ops, goal, step_metric = op
        summary = ",".join(ops) or None
        if "best" in ops and goal is None:
            with pytest.raises(ValueError):
                run.define_metric(name, summary=summary, goal=goal, step_metric=step_metric)
            return
        run.define_metric(name, summary=summary, goal=goal, step_metric=step_metric)
        model.define(name, ops, goal, step_metric)
    elif kind == "check":
        live = _visible(run.summary.as_dict())
        assert _same(live, model.summary(), strict=False), (live, model.summary())
        assert run.step == model.step
        assert run.config.as_dict() == model.config


@PROPERTY_SETTINGS
@given(config=initial_config, ops=operations)
def test_random_operations_match_the_reference_model(rundir, config, ops):
    run = mpbackend.init(project="props", config=config)
    model = Model(config)
    try:
        for op in ops:
            _apply(run, model, op)
    finally:
        run.finish()
    model.finish()
    info, rows = _history(run.dir)

    assert [step for step, _ in rows] == [step for step, _ in model.rows]
    for (step, got), (_, want) in zip(rows, model.rows):
        assert _same(got, want), f"row at step {step}: stored {got!r}, expected {want!r}"
    assert len(rows) == len(model.rows)
    expected = model.summary()
    assert _same(_visible(info["summary"]), expected, strict=False), \
        (info["summary"], expected)
    assert _same(_visible(run.summary.as_dict()), expected, strict=False)
    assert info["config"] == model.config
    assert info["step"] == model.step and run.step == model.step
    assert info["state"] == "finished"


# -- the store round trip at scale ------------------------------------------------------------

KINDS = ["int", "float", "str", "none", "list", "mixed"]


def _value(rnd, kind: str) -> Any:
    if kind == "mixed":
        kind = rnd.choice(KINDS[:-1])
    if kind == "int":
        return rnd.choice([rnd.randint(-3, 3), rnd.randint(-(2**63), 2**63 - 1), 2**64 + 1])
    if kind == "float":
        return rnd.choice([rnd.uniform(-1e6, 1e6), math.nan, math.inf, -math.inf, -0.0])
    if kind == "str":
        return rnd.choice(["", "x", "ünï", "a,b", '"q"', "NaN"])
    if kind == "none":
        return None
    return [rnd.randint(0, 9), rnd.choice(["s", 1.5, None])]


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 2500), nkeys=st.integers(1, 6),
       flush_every=st.sampled_from([0, 7, 100, 1000]))
def test_rows_round_trip_through_the_store(rundir, seed, n, nkeys, flush_every):
    """Random rows (sparse keys, every value type, gaps in the steps) across chunk
    boundaries and merged parts read back exactly, live after each flush and at the
    end; step ranges and the key order are right."""
    rnd = random.Random(seed)  # the rows themselves: thousands of draws, not hypothesis's
    keys = [f"k{j}" for j in range(nkeys)]
    kinds = {key: rnd.choice(KINDS) for key in keys}
    presence = {key: rnd.choice([1.0, 0.5, 0.05]) for key in keys}
    run = mpbackend.init(project="roundtrip")
    expected: list[tuple[int, dict[str, Any]]] = []
    step = 0
    live_checks = 0
    try:
        for i in range(n):
            row = {key: _value(rnd, kinds[key]) for key in keys if rnd.random() < presence[key]}
            if rnd.random() < 0.02:
                step += rnd.randint(1, 50)
                run.log(row, step=step, commit=True)
            else:
                run.log(row)
            expected.append((step, row))  # an empty row takes a step too
            step += 1
            if flush_every and (i + 1) % flush_every == 0:
                run.flush(timeout=20)
                if live_checks < 2 and rnd.random() < 0.1:
                    live_checks += 1
                    _, live = _history(run.dir)
                    assert _same([list(r) for r in live], [list(r) for r in expected])
    finally:
        run.finish()
    info, rows = _history(run.dir)
    assert len(rows) == len(expected)
    for (got_step, got), (want_step, want) in zip(rows, expected):
        assert got_step == want_step
        assert _same(got, want), f"step {got_step}: stored {got!r}, logged {want!r}"
    assert info["step"] == step
    with mpbackend.RunReader(run.dir) as reader:
        order: dict[str, None] = {}
        for _, row in expected:
            order.update(dict.fromkeys([*row, "_runtime", "_timestamp"]))
        assert reader.keys() == list(order)
        assert reader.row_count() == len(expected)
        if expected:
            lo = rnd.randint(0, step)
            hi = rnd.randint(lo, step)
            window = [(s, r) for s, r in expected if lo <= s <= hi]
            got = [(row["_step"], {k: v for k, v in row.items() if not k.startswith("_")})
                   for row in reader.history(min_step=lo, max_step=hi)]
            assert _same([list(r) for r in got], [list(r) for r in window])
