"""A sweep's configuration, checked, and the parameters of its next trial.

wandb's format: ``method`` (grid, random, bayes), ``metric`` ({name, goal}),
``parameters`` (each ``values``, ``value``, a ``distribution`` with ``min``/``max``/
``mu``/``sigma``/``q``, or nested ``parameters``), ``run_cap``, ``program``,
``command``, ``early_terminate`` (``hyperband``, judged by ``hyperband``). Bayesian
search uses optuna (the ``sweeps`` extra).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from typing import Any

from . import hyperband

METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform",
                 "log_uniform", "log_uniform_values", "q_log_uniform",
                 "q_log_uniform_values", "normal", "q_normal", "log_normal", "q_log_normal",
                 "inv_log_uniform", "inv_log_uniform_values")


def flat_parameters(parameters: Mapping[str, Any], prefix: str = "") -> dict[str, dict]:
    """``{"opt": {"parameters": {"lr": {...}}}}`` as ``{"opt.lr": {...}}``."""
    out: dict[str, dict] = {}
    for name, spec in parameters.items():
        if not isinstance(spec, Mapping):
            raise ValueError(f"sweep parameter {prefix}{name!r} is a dict (values, value, "
                             "distribution, or parameters), not " + type(spec).__name__)
        if "parameters" in spec:
            out.update(flat_parameters(spec["parameters"], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = _checked(f"{prefix}{name}", dict(spec))
    return out


def _checked(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    if "value" in spec:
        return {"distribution": "constant", "value": spec["value"]}
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise ValueError(f"sweep parameter {name!r}: values is a non-empty list")
        if "probabilities" in spec and len(spec["probabilities"]) != len(spec["values"]):
            raise ValueError(f"sweep parameter {name!r}: one probability per value")
        return {"distribution": "categorical", **spec}
    kind = spec.get("distribution")
    if kind is None:
        if "min" in spec and "max" in spec:
            ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                       for k in ("min", "max"))
            kind = "int_uniform" if ints else "uniform"
        elif "mu" in spec or "sigma" in spec:
            kind = "normal"
        else:
            raise ValueError(f"sweep parameter {name!r} needs values, value, min/max or "
                             "a distribution")
    if kind not in DISTRIBUTIONS:
        raise ValueError(f"sweep parameter {name!r}: unknown distribution {kind!r}")
    spec = {**spec, "distribution": kind}
    if "uniform" in kind and ("min" not in spec or "max" not in spec):
        raise ValueError(f"sweep parameter {name!r}: {kind} needs min and max")
    if "uniform" in kind and spec["min"] > spec["max"]:
        raise ValueError(f"sweep parameter {name!r}: min is above max")
    if "values" in kind and "log" in kind and spec["min"] <= 0:
        raise ValueError(f"sweep parameter {name!r}: {kind} needs min > 0")
    return spec


def check(config: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep configuration as stored (ValueError naming what is wrong)."""
    if not isinstance(config, Mapping):
        raise TypeError("a sweep configuration is a dict")
    config = dict(config)
    method = config.get("method")
    if method not in METHODS:
        raise ValueError(f"sweep method is one of {list(METHODS)}, not {method!r}")
    parameters = config.get("parameters")
    if not isinstance(parameters, Mapping) or not parameters:
        raise ValueError("a sweep needs parameters")
    flat = flat_parameters(parameters)
    metric = config.get("metric")
    if method == "bayes" and not (isinstance(metric, Mapping) and metric.get("name")):
        raise ValueError("a bayes sweep needs metric: {name, goal}")
    if isinstance(metric, Mapping) and metric.get("goal", "minimize") not in ("minimize",
                                                                            "maximize"):
        raise ValueError("metric goal is minimize or maximize")
    if isinstance(metric, Mapping) and "target" in metric and not hyperband.valid(
            metric["target"]):
        raise ValueError("metric target is a number")
    if config.get("early_terminate") is not None:
        if not (isinstance(metric, Mapping) and metric.get("name")):
            raise ValueError("early_terminate needs metric: {name, goal}")
        config["early_terminate"] = hyperband.check(config["early_terminate"])
    if method == "grid":
        for name, spec in flat.items():
            if spec["distribution"] not in ("constant", "categorical", "int_uniform"):
                raise ValueError(f"a grid sweep takes values (or int_uniform); {name!r} is "
                                 f"{spec['distribution']}")
    return config


def unflatten(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def grid(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination, in a fixed order (a grid sweep's trials, one each)."""
    flat = flat_parameters(config["parameters"])
    names = sorted(flat)
    choices = []
    for name in names:
        spec = flat[name]
        kind = spec["distribution"]
        if kind == "constant":
            choices.append([spec["value"]])
        elif kind == "categorical":
            choices.append(list(spec["values"]))
        else:
            choices.append(list(range(int(spec["min"]), int(spec["max"]) + 1)))
    return [unflatten(dict(zip(names, combo))) for combo in itertools.product(*choices)]


def sample(spec: Mapping[str, Any], rng: random.Random) -> Any:
    """One value of a parameter, as wandb's random search draws it."""
    kind = spec["distribution"]
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        weights = spec.get("probabilities")
        return rng.choices(spec["values"], weights=weights)[0]
    lo: Any = spec.get("min", 0.0)
    hi: Any = spec.get("max", 1.0)
    q = spec.get("q", 1.0)
    if kind == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if kind in ("uniform", "q_uniform"):
        value = rng.uniform(lo, hi)
    elif kind in ("log_uniform", "q_log_uniform"):
        value = math.exp(rng.uniform(lo, hi))  # min/max are natural-log exponents
    elif kind in ("log_uniform_values", "q_log_uniform_values"):
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    elif kind in ("inv_log_uniform",):
        value = 1 / math.exp(rng.uniform(lo, hi))
    elif kind in ("inv_log_uniform_values",):
        value = 1 / math.exp(rng.uniform(math.log(lo), math.log(hi)))
    elif kind in ("normal", "q_normal"):
        value = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
    else:  # log_normal, q_log_normal
        value = math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    if kind.startswith("q_"):
        value = round(value / q) * q
    return value


def random_params(config: Mapping[str, Any], seed: str) -> dict[str, Any]:
    rng = random.Random(seed)  # a trial's draw depends on the sweep and its number only
    flat = flat_parameters(config["parameters"])
    return unflatten({name: sample(flat[name], rng) for name in sorted(flat)})


def bayes_params(config: Mapping[str, Any], done: list[tuple[dict[str, Any], float]],
                 seed: int) -> dict[str, Any]:
    """The next parameters of a bayes sweep: optuna's TPE sampler, told every finished
    or stopped trial (its flat parameters and metric value)."""
    try:
        import optuna
    except ImportError:
        raise ImportError("a bayes sweep needs optuna: pip install 'mpbackend[sweeps]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    flat = flat_parameters(config["parameters"])
    distributions = {name: _optuna(optuna, name, spec) for name, spec in flat.items()}
    goal = config["metric"].get("goal", "minimize")
    study = optuna.create_study(direction=goal,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    for params, value in done:
        try:
            study.add_trial(optuna.trial.create_trial(
                params={k: params[k] for k in distributions},
                distributions=distributions, value=value))
        except (KeyError, ValueError):
            continue  # a trial of an older form of the config
    trial = study.ask(distributions)
    return unflatten(trial.params)


def _optuna(optuna: Any, name: str, spec: Mapping[str, Any]) -> Any:
    kind = spec["distribution"]
    if kind == "constant":
        return optuna.distributions.CategoricalDistribution([spec["value"]])
    if kind == "categorical":
        return optuna.distributions.CategoricalDistribution(list(spec["values"]))
    if kind == "int_uniform":
        return optuna.distributions.IntDistribution(int(spec["min"]), int(spec["max"]))
    if kind == "uniform":
        return optuna.distributions.FloatDistribution(spec["min"], spec["max"])
    if kind == "q_uniform":
        return optuna.distributions.FloatDistribution(spec["min"], spec["max"],
                                                      step=spec.get("q", 1.0))
    if kind == "log_uniform_values":
        return optuna.distributions.FloatDistribution(spec["min"], spec["max"], log=True)
    if kind == "log_uniform":
        return optuna.distributions.FloatDistribution(math.exp(spec["min"]),
                                                      math.exp(spec["max"]), log=True)
    raise ValueError(f"a bayes sweep takes values, uniform, q_uniform, int_uniform, "
                     f"log_uniform(_values); {name!r} is {kind}")


def flat_values(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(flat_values(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
