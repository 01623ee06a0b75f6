"""WANDB_MODE=disabled: the script runs unchanged and nothing is written anywhere."""
import json

import numpy as np

import mpbackend as wandb

run = wandb.init(project="disabled-demo", config={"lr": 0.05, "batch_size": 8})
rng = np.random.default_rng(0)
w = np.zeros(3)
X = rng.normal(size=(64, 3))
y = X @ np.array([1.0, -1.0, 2.0])
for _ in range(10):
    grad = 2 * X.T @ (X @ w - y) / len(y)
    w -= wandb.config.lr * grad
    wandb.log({"mse": float(np.mean((X @ w - y) ** 2))})
wandb.summary["final_mse"] = float(np.mean((X @ w - y) ** 2))
out = {"id": run.id, "lr": wandb.config.lr, "batch_size": wandb.config["batch_size"]}
wandb.finish()
print("RESULT " + json.dumps(out))
