"""Train a small MLP on synthetic data: argparse config, per-step and per-epoch logging."""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

import mpbackend as wandb

parser = argparse.ArgumentParser(description="PyTorch MLP example")
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--hidden", type=int, default=16)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

wandb.login()
wandb.init(project="mlp-demo", config={"architecture": "MLP", "dataset": "synthetic"})
wandb.config.update(args)

torch.manual_seed(args.seed)
X = torch.randn(256, 8)
y = (X[:, 0] + X[:, 1] > 0).long()
model = nn.Sequential(nn.Linear(8, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)

rows, best_acc = [], 0.0
for epoch in range(args.epochs):
    model.train()
    for i in range(0, len(X), args.batch_size):
        xb, yb = X[i:i + args.batch_size], y[i:i + args.batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        wandb.log({"train/loss": loss.item()})
        rows.append({"train/loss": loss.item()})
    model.eval()
    with torch.no_grad():
        acc = (model(X).argmax(dim=1) == y).float().mean().item()
    wandb.log({"epoch": epoch, "val/acc": acc})
    rows.append({"epoch": epoch, "val/acc": acc})
    if acc > best_acc:
        best_acc = acc
        wandb.summary["best_acc"] = best_acc

wandb.run.summary.best = best_acc
run_id = wandb.run.id
wandb.finish()
print("RESULT " + json.dumps({"id": run_id, "rows": rows, "best_acc": best_acc,
                              "config": {"architecture": "MLP", "dataset": "synthetic",
                                         **vars(args)}}))
