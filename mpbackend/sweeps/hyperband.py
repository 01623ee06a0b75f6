"""Hyperband early termination (a sweep's ``early_terminate``): which running trial
to stop, from every trial's metric history.

    early_terminate: {type: hyperband, min_iter | max_iter + s, eta (3), strict (true)}
        --check()--> filled and checked, stored with the sweep (plan.check)
    trials.Watch (one thread per running trial, every POLL seconds)
        --each trial's metric values, in logged order--> verdict(histories, run id)
        --a reason--> the agent stops the trial (its next log() raises, or its
          program gets SIGTERM)

The rule is wandb's. An iteration is one logged value of the sweep's metric (a
row without it, or with a value that is not a finite number, does not count).
The bands are the iterations at which runs are judged: ``min_iter``,
``min_iter*eta``, ``min_iter*eta**2``, ...; or, from ``max_iter``, ``max_iter/eta``,
``max_iter/eta**2``, ... (``s`` of them, at least 1). At each band the threshold
is the value at the ``1/eta`` quantile of every trial that reached it (running
or ended). A running trial is judged at the last band it reached: stopped if its
value there (``strict``, the default) or its best value so far (``strict:
false``) is worse than that band's threshold.

Pure functions on plain lists: the agents, the command line and the tests call
them alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")


def check(early_terminate: Any) -> dict[str, Any]:
    """``early_terminate`` as stored: defaults filled (eta 3, strict true), ValueError
    naming what is wrong."""
    if not isinstance(early_terminate, Mapping):
        raise ValueError("early_terminate is a dict: {type: hyperband, min_iter: N} or "
                         "{type: hyperband, max_iter: N, s: N}")
    spec = dict(early_terminate)
    if spec.get("type") != "hyperband":
        raise ValueError(f"early_terminate type is hyperband, not {spec.get('type')!r}")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ValueError(f"early_terminate: unknown key(s) {unknown}; it takes {list(KEYS)}")
    eta = spec.setdefault("eta", 3)
    if not _number(eta) or eta <= 1:
        raise ValueError(f"early_terminate eta is a number above 1, not {eta!r}")
    if not isinstance(spec.setdefault("strict", True), bool):
        raise ValueError("early_terminate strict is true or false")
    if "min_iter" in spec:
        if not _whole(spec["min_iter"]) or spec["min_iter"] < 1:
            raise ValueError("early_terminate min_iter is a whole number >= 1")
    elif "max_iter" in spec:
        if not _whole(spec["max_iter"]) or "s" not in spec or not _number(spec["s"]):
            raise ValueError("early_terminate max_iter (a whole number) needs s (a number)")
        if not bands(spec, 1 << 62):
            raise ValueError("early_terminate: max_iter/eta is below 1, so there is no "
                             "band; raise max_iter or s, or lower eta")
    else:
        raise ValueError("early_terminate hyperband needs min_iter, or max_iter and s")
    return spec


def bands(spec: Mapping[str, Any], longest: int) -> list[int]:
    """The iterations at which trials are judged, ascending, up to ``longest``."""
    eta = float(spec["eta"])
    out: list[int] = []
    if "min_iter" in spec:
        band = float(spec["min_iter"])
        while int(band) <= longest:
            out.append(int(band))
            band *= eta
    else:
        band = float(spec["max_iter"])
        for _ in range(max(0, math.ceil(float(spec["s"])))):
            band /= eta
            if band < 1:
                break
            out.append(int(band))
    return sorted(b for b in set(out) if b <= longest)


def valid(value: Any) -> bool:
    """A value that counts as an iteration of the metric: a finite number."""
    return _number(value) and math.isfinite(value)


def verdict(histories: Mapping[str, Sequence[float]], run_id: str, spec: Mapping[str, Any],
            goal: str = "minimize") -> str | None:
    """Why trial ``run_id`` (running) should stop now, or None to let it go on.

    ``histories`` holds every trial's metric values in logged order, this one's
    included, keyed by run id.
    """
    sign = -1.0 if goal == "maximize" else 1.0  # judged as a loss: lower is better
    mine = [sign * v for v in histories.get(run_id, ())]
    reached = bands(spec, len(mine))
    if not reached:
        return None
    band = reached[-1]
    values = sorted(sign * h[band - 1] for h in histories.values() if len(h) >= band)
    threshold = values[int((1.0 / float(spec["eta"])) * len(values))]
    value = mine[band - 1] if spec.get("strict", True) else min(mine)
    if value <= threshold:
        return None
    return (f"hyperband: at iteration {band} its value {sign * value:g} is worse than "
            f"{sign * threshold:g}, the top 1/{spec['eta']:g} of {len(values)} trial(s)")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return _number(value) and float(value).is_integer()
