"""No project and no name given: wandb takes the project from the git repository the
script runs in, and generates a display name (adjective-noun-number)."""
import json

import numpy as np

import mpbackend as wandb


def train(steps, lr, rng):
    w, X = 0.0, rng.normal(size=32)
    y = 3.0 * X
    losses = []
    for _ in range(steps):
        w -= lr * float(np.mean(2 * (w * X - y) * X))
        losses.append(float(np.mean((w * X - y) ** 2)))
    return losses


run = wandb.init(config={"lr": 0.1, "steps": 3})
losses = train(wandb.config.steps, wandb.config.lr, np.random.default_rng(0))
for loss in losses:
    wandb.log({"loss": loss})
out = {"id": run.id, "project": run.project, "name": run.name, "losses": losses}
wandb.finish()
print("RESULT " + json.dumps(out))
