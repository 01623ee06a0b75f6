# A notebook exported as a script: top-level cells, wandb.init(reinit=True) run twice.
import json

import mpbackend as wandb

wandb.login()

# %% [cell 2] first experiment
wandb.init(project="notebook-demo", config={"lr": 0.1}, reinit=True)
first_losses = [0.9, 0.8, 0.7]
for loss in first_losses:
    wandb.log({"loss": loss})
first_id = wandb.run.id

# %% [cell 3] tweak the learning rate and run the cell again: reinit finishes the first run
wandb.init(project="notebook-demo", config={"lr": 0.05}, reinit=True)
second_losses = [0.85, 0.6]
for loss in second_losses:
    wandb.run.log({"loss": loss})
wandb.run.summary["note"] = "smaller lr"
second_id = wandb.run.id

# %% [cell 4]
wandb.run.finish()
print("RESULT " + json.dumps({"first_id": first_id, "second_id": second_id,
                              "first_losses": first_losses, "second_losses": second_losses,
                              "run_after": wandb.run is None}))
