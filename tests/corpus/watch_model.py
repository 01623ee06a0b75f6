"""wandb.watch(model, log="all", log_freq=3) on a small torch MLP: gradient and parameter
histograms join the rows the training loop logs (validation forwards count too)."""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

import mpbackend as wandb


def stats(tensors):
    return {name: [t.min().item(), t.max().item(), t.numel()] for name, t in tensors}


torch.manual_seed(0)
X = torch.randn(80, 4)
y = X @ torch.tensor([[1.0], [-1.0], [0.5], [2.0]])
x_val, y_val = X[:16], y[:16]
run = wandb.init(project="watch-demo", config={"lr": 0.05, "epochs": 2, "batch_size": 16,
                                               "log_freq": 3})
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
wandb.watch(model, log="all", log_freq=run.config.log_freq)

forwards, backwards, rows = [], [], []  # what each forward / backward saw, in order
for epoch in range(run.config.epochs):
    for i in range(0, len(X), run.config.batch_size):
        forwards.append(stats(model.named_parameters()))
        loss = F.mse_loss(model(X[i:i + 16]), y[i:i + 16])
        model.zero_grad()
        loss.backward()
        backwards.append(stats((n, p.grad) for n, p in model.named_parameters()))
        with torch.no_grad():
            for p in model.parameters():
                p -= run.config.lr * p.grad
        wandb.log({"train/loss": loss.item()})
        rows.append({"train/loss": loss.item()})
    with torch.no_grad():
        forwards.append(stats(model.named_parameters()))
        val_loss = F.mse_loss(model(x_val), y_val).item()
    wandb.log({"epoch": epoch, "val/loss": val_loss})
    rows.append({"epoch": epoch, "val/loss": val_loss})

out = {"id": run.id, "rows": rows, "forwards": forwards, "backwards": backwards,
       "names": [n for n, _ in model.named_parameters()]}
wandb.finish()
print("RESULT " + json.dumps(out))
