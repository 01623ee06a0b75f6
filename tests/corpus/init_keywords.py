"""init() as team scripts call it: entity, save_code, anonymous and silent settings."""
import json

import numpy as np

import mpbackend as wandb

run = wandb.init(
    entity="team",
    project="p",
    save_code=True,
    anonymous="allow",
    config={"lr": 3e-4, "epochs": 3},
    settings=wandb.Settings(silent=True),
)
rng = np.random.default_rng(5)
losses = []
for epoch in range(wandb.config.epochs):
    loss = float(np.exp(-epoch) + 0.01 * rng.random())
    wandb.log({"epoch": epoch, "loss": loss})
    losses.append(loss)
out = {"id": run.id, "entity": run.entity, "project": run.project, "losses": losses}
wandb.finish()
print("RESULT " + json.dumps(out))
