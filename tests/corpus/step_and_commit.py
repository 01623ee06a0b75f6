"""log(..., step=epoch) merges rows of one step; commit=False builds one row from parts."""
import json

import mpbackend as wandb

# Run A: an explicit step per epoch, train and val logged separately into the same row.
run = wandb.init(project="steps-demo", name="explicit-step")
train, val = [0.9, 0.6, 0.45], [1.0, 0.7, 0.5]
for epoch in range(3):
    wandb.log({"train_loss": train[epoch]}, step=epoch * 5)
    wandb.log({"val_loss": val[epoch]}, step=epoch * 5)
wandb.log({"late": 1.0}, step=0)  # a step already passed: dropped with a warning
a_id = run.id
run.finish()

# Run B: the learning rate is logged with commit=False, the loss commits the row.
run = wandb.init(project="steps-demo", name="commit-false")
lrs, losses = [0.1, 0.05, 0.025, 0.0125], [2.0, 1.5, 1.2, 1.1]
for lr, loss in zip(lrs, losses):
    wandb.log({"lr": lr}, commit=False)
    wandb.log({"loss": loss})
wandb.log({"final_eval": 0.75}, commit=False)  # left pending: finish() commits it
b_id = run.id
run.finish()
print("RESULT " + json.dumps({"a_id": a_id, "b_id": b_id, "train": train, "val": val,
                              "lrs": lrs, "losses": losses, "final_eval": 0.75}))
