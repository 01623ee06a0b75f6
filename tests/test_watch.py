"""watch(): torch hooks log gradient and parameter histograms every log_freq steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mpbackend

pytestmark = pytest.mark.timeout(90)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))


def _train(run, model, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    grads = []
    for _ in range(steps):
        x = torch.randn(8, 4)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        grads.append(model[0].weight.grad.clone())
        opt.step()
        run.log({"loss": loss.item()})
    return grads


def test_gradients_every_log_freq_steps_as_histograms(rundir):
    run = mpbackend.init(project="watch")
    model = _model()
    run.watch(model, log="all", log_freq=3)
    grads = _train(run, model, 7)
    run.finish()
    rows = mpbackend.Api(str(rundir)).run(f"watch/{run.id}").history(pandas=False)
    logged = [r["_step"] for r in rows if "gradients/0.weight" in r]
    assert logged == [2, 5]  # the 3rd and 6th backward, merged into those steps' rows
    assert [r["_step"] for r in rows if "parameters/2.bias" in r] == [2, 5]
    hist = rows[2]["gradients/0.weight"]
    g = grads[2].reshape(-1)
    assert hist["_type"] == "histogram" and sum(hist["values"]) == g.numel() == 12
    assert len(hist["values"]) == 64 and len(hist["bins"]) == 65
    assert np.isclose(hist["bins"][0], g.min().item()) and np.isclose(hist["bins"][-1],
                                                                      g.max().item())
    assert all(f"gradients/{n}" in rows[2] for n in ("0.bias", "2.weight", "2.bias"))
    assert all("loss" in r for r in rows) and len(rows) == 7  # no row of their own


def test_unwatch_and_finish_remove_the_hooks(rundir):
    run = mpbackend.init(project="watch")
    model = _model()
    mpbackend.watch(model, log_freq=1)
    _train(run, model, 2)
    mpbackend.unwatch(model)
    _train(run, model, 2)
    run.watch(model, log="parameters", log_freq=1)
    run.finish()
    assert not model._forward_hooks  # finish() took the hooks off
    model(torch.randn(1, 4)).sum().backward()  # no run: nothing logged, nothing raised
    rows = mpbackend.Api(str(rundir)).run(f"watch/{run.id}").history(pandas=False)
    assert [r["_step"] for r in rows if "gradients/0.weight" in r] == [0, 1]
    assert all(k.startswith(("gradients/", "loss", "_")) for r in rows for k in r)


def test_watch_refuses_what_is_not_a_module(rundir):
    run = mpbackend.init(project="watch")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        run.watch(object())
    with pytest.raises(ValueError, match="log_freq"):
        run.watch(_model(), log_freq=0)
    with pytest.raises(ValueError, match="'gradients', 'parameters', 'all'"):
        run.watch(_model(), log="weights")
    run.finish()
