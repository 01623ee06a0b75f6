"""Name, tags and notes set on the run after init(), once the script knows them."""
import json

import mpbackend as wandb

run = wandb.init(project="attrs-demo", name="first-try", tags=["baseline"],
                 config={"lr": 0.2})
losses = []
loss = 1.0
for epoch in range(3):
    loss *= 0.8
    run.log({"loss": loss})
    losses.append(loss)
    if epoch == 1:
        # The run turned out worth keeping: give it a proper name, tags and notes.
        run.name = "renamed"
        run.tags = run.tags + ("tuned",)
        run.notes = "lr halved after epoch 1"
        run.config.update({"lr": 0.1}, allow_val_change=True)

out = {"id": run.id, "name": run.name, "tags": list(run.tags), "notes": run.notes,
       "losses": losses}
run.finish()
print("RESULT " + json.dumps(out))
