"""Track the distribution of a linear model's weights each epoch with wandb.Histogram:
numpy's own bins (np_histogram=) and wandb's binning of the raw values (num_bins=)."""
import json

import numpy as np

import mpbackend as wandb

rng = np.random.default_rng(42)
X = rng.normal(size=(256, 50))
true_w = rng.laplace(scale=0.5, size=50)
y = X @ true_w + 0.1 * rng.normal(size=256)

run = wandb.init(project="histogram-demo", config={"lr": 0.05, "epochs": 4, "bins": 20})
w = rng.normal(scale=0.01, size=50)
logged = []
for epoch in range(run.config.epochs):
    grad = 2 * X.T @ (X @ w - y) / len(y)
    w = w - run.config.lr * grad
    counts, edges = np.histogram(w, bins=10, range=(-2, 2))
    mse = float(((X @ w - y) ** 2).mean())
    wandb.log({
        "epoch": epoch,
        "mse": mse,
        "weights": wandb.Histogram(w, num_bins=run.config.bins),
        "weights_fixed_range": wandb.Histogram(np_histogram=(counts, edges)),
        "gradients": wandb.Histogram(np_histogram=np.histogram(grad)),
    })
    logged.append({"mse": mse, "w": w.tolist(), "grad": grad.tolist(), "counts": counts.tolist(),
                   "edges": edges.tolist()})
wandb.summary["final_weights"] = wandb.Histogram(w)

out = {"id": run.id, "logged": logged, "config": dict(run.config)}
run.finish()
print("RESULT " + json.dumps(out))
