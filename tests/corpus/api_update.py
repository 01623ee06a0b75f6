"""Correct a finished run through the Api: summary, config, tags and name, then update()."""
import json

import mpbackend as wandb

run = wandb.init(project="update-demo", name="before", tags=["draft"], config={"lr": 0.1})
for i in range(3):
    wandb.log({"loss": 1.0 / (i + 1)})
wandb.summary["val_acc"] = 0.8
run_path = run.path
wandb.finish()

api = wandb.Api()
r = api.run(run_path)
r.summary["x"] = 1
r.summary["val_acc"] = 0.85
r.config["reviewed"] = True
r.tags.append("reviewed")
r.name = "after"
r.update()

again = api.run(run_path)
out = {"id": run.id, "path": run_path, "summary_x": again.summary["x"],
       "summary_val_acc": again.summary["val_acc"], "config": dict(again.config),
       "tags": list(again.tags), "name": again.name}
print("RESULT " + json.dumps(out))
