"""A preemptible job, resumed through WANDB_RUN_ID and WANDB_RESUME=allow set by its
scheduler: each launch trains three more epochs and picks up where the last one stopped."""
import json

import mpbackend as wandb

EPOCHS_PER_JOB = 3
run = wandb.init(project="resume-demo", config={"epochs": 6, "lr": 0.01})
start = 0
if run.resumed:
    start = run.summary["epoch"] + 1
    wandb.termlog(f"resuming run {run.id} at epoch {start}")

logged = []
for epoch in range(start, min(start + EPOCHS_PER_JOB, wandb.config.epochs)):
    loss = 1.0 / (epoch + 1)
    wandb.log({"epoch": epoch, "loss": loss})
    logged.append([epoch, loss])
    if loss < run.summary.get("best_loss", float("inf")):
        run.summary["best_loss"] = loss

out = {"id": run.id, "resumed": run.resumed, "start": start, "logged": logged}
wandb.finish()
print("RESULT " + json.dumps(out))
