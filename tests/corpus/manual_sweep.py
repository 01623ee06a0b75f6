"""A small hyperparameter sweep by hand: one run per learning rate, in one process."""
import json

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(1)
X = rng.normal(size=(128, 4))
y = X @ np.array([0.5, -1.0, 2.0, 0.0]) + 0.1 * rng.normal(size=128)

results = []
for lr in (0.3, 0.1, 0.03):
    run = wandb.init(project="sweep-demo", group="lr-sweep", name=f"lr-{lr}",
                     config={"lr": lr, "steps": 6})
    w = np.zeros(4)
    losses = []
    for _ in range(wandb.config.steps):
        w -= wandb.config.lr * 2 * X.T @ (X @ w - y) / len(y)
        loss = float(np.mean((X @ w - y) ** 2))
        wandb.log({"mse": loss})
        losses.append(loss)
    wandb.summary["final_mse"] = losses[-1]
    results.append({"id": run.id, "lr": lr, "losses": losses})
    run.finish()

best = min(results, key=lambda r: r["losses"][-1])
print("RESULT " + json.dumps({"runs": results, "best_lr": best["lr"]}))
