"""Train a tiny model, torch.save it and wandb.save() the checkpoint with the run."""
import hashlib
import json

import torch
import torch.nn as nn

import mpbackend as wandb

torch.manual_seed(0)
run = wandb.init(project="save-demo", config={"lr": 0.01, "steps": 5})
model = nn.Linear(4, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=wandb.config.lr)
X, y = torch.randn(32, 4), torch.randn(32, 1)
losses = []
for _ in range(wandb.config.steps):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(X), y)
    loss.backward()
    optimizer.step()
    wandb.log({"loss": loss.item()})
    losses.append(loss.item())

torch.save(model.state_dict(), "model.pt")
saved = wandb.save("model.pt")
with open("model.pt", "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
out = {"id": run.id, "dir": run.dir, "losses": losses, "sha256": digest,
       "saved": saved if isinstance(saved, (bool, type(None))) else [str(p) for p in saved]}
wandb.finish()
print("RESULT " + json.dumps(out))
