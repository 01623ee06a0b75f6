"""Training stops when the loss diverges: the script calls sys.exit(3), as a job does to
tell its scheduler not to retry."""
import json
import math
import sys

import mpbackend as wandb

run = wandb.init(project="exit-demo", config={"lr": 10.0, "max_steps": 20})
loss, losses = 1.0, []
for step in range(wandb.config.max_steps):
    loss *= 1 + wandb.config.lr / 10
    wandb.log({"loss": loss, "log_loss": math.log(loss)})
    losses.append(loss)
    if loss > 10:
        wandb.termwarn(f"loss diverged at step {step}")
        print("RESULT " + json.dumps({"id": run.id, "losses": losses}))
        sys.exit(3)

wandb.finish()
print("RESULT " + json.dumps({"id": run.id, "losses": losses}))
