"""Checkpoint a torch model as a "model" artifact each epoch the validation loss improves,
aliased "best"; after the run, fetch the best checkpoint back with the public Api."""
import json
import os

import torch
import torch.nn.functional as F

import mpbackend as wandb

torch.manual_seed(0)
x_train = torch.linspace(-1, 1, 64).unsqueeze(1)
y_train = 2.0 * x_train           # the training targets pull the weight towards 2.0
x_val = torch.linspace(-1, 1, 16).unsqueeze(1)
y_val = 1.4 * x_val               # the validation set prefers 1.4: val loss turns up

run = wandb.init(project="ckpt-demo", config={"epochs": 8, "lr": 0.4})
model = torch.nn.Linear(1, 1, bias=False)
torch.nn.init.zeros_(model.weight)
best_val, saved, rows = float("inf"), [], []
for epoch in range(run.config.epochs):
    loss = F.mse_loss(model(x_train), y_train)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= run.config.lr * p.grad
        val_loss = F.mse_loss(model(x_val), y_val).item()
    rows.append({"epoch": epoch, "train/loss": loss.item(), "val/loss": val_loss})
    wandb.log(rows[-1])
    if val_loss < best_val:
        best_val = val_loss
        torch.save(model.state_dict(), "model.pt")
        art = wandb.Artifact("linear-model", type="model",
                             metadata={"epoch": epoch, "val_loss": val_loss})
        art.add_file("model.pt")
        run.log_artifact(art, aliases=["best", f"epoch-{epoch}"])
        saved.append({"epoch": epoch, "weight": model.weight.item(), "val_loss": val_loss})
wandb.summary["best_val_loss"] = best_val
run_id = run.id
run.finish()

api = wandb.Api()
best = api.artifact("ckpt-demo/linear-model:best")
state = torch.load(os.path.join(best.download(), "model.pt"))
versions = api.artifact_versions("model", "ckpt-demo/linear-model")
out = {"id": run_id, "rows": rows, "saved": saved, "best_version": best.version,
       "best_metadata": best.metadata, "best_weight": state["weight"].item(),
       "versions": [[v.version, sorted(v.aliases)] for v in versions]}
print("RESULT " + json.dumps(out))
