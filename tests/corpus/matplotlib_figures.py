"""Log matplotlib figures: a heatmap figure logged directly (pyplot and a Figure), and a
loss curve through wandb.Image(fig), as wandb's matplotlib examples do."""
import json

import matplotlib.pyplot as plt
import numpy as np

import mpbackend as wandb

plt.switch_backend("Agg")

rng = np.random.default_rng(5)
X = rng.normal(size=(64, 3))
Y = X @ rng.normal(size=(3, 2))
run = wandb.init(project="mpl-demo", config={"lr": 0.1, "epochs": 3})
W = np.zeros((3, 2))
losses = []
for epoch in range(run.config.epochs):
    W -= run.config.lr * 2 * X.T @ (X @ W - Y) / len(X)
    loss = float(((X @ W - Y) ** 2).mean())
    losses.append(loss)
    plt.figure(figsize=(3, 2), dpi=50)
    plt.imshow(W, cmap="viridis")
    plt.title(f"weights, epoch {epoch}")
    wandb.log({"loss": loss, "weights_heatmap": plt})
    plt.close()

fig, ax = plt.subplots(figsize=(4, 3), dpi=50)
ax.plot(range(len(losses)), losses, marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("mse")
wandb.log({"loss_curve": wandb.Image(fig, caption="training loss")})
grid, axes = plt.subplots(1, 2, figsize=(4, 2), dpi=50)
for a, img in zip(axes, (X[:8], Y[:8])):
    a.imshow(img)
wandb.log({"inputs_outputs": grid})
fig.savefig("loss_curve.png")
grid.savefig("inputs_outputs.png")
sizes = {"curve": [int(v) for v in fig.canvas.get_width_height()],
         "grid": [int(v) for v in grid.canvas.get_width_height()]}
out = {"id": run.id, "losses": losses, "sizes": sizes}
wandb.finish()
print("RESULT " + json.dumps(out))
