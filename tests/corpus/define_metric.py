"""define_metric: val/* plotted against epoch, the max of acc kept in the summary."""
import json
import random

import mpbackend as wandb

random.seed(7)
wandb.init(project="metrics-demo", config={"epochs": 4, "batches": 3})
wandb.define_metric("epoch")
wandb.define_metric("val/*", step_metric="epoch")
wandb.define_metric("acc", summary="max")

rows = []
for epoch in range(wandb.config.epochs):
    for _ in range(wandb.config.batches):
        row = {"train/loss": round(random.random(), 6), "acc": round(random.random(), 6)}
        wandb.log(row)
        rows.append(row)
    row = {"val/loss": round(random.random(), 6), "val/acc": round(random.random(), 6),
           "epoch": epoch}
    wandb.log(row)
    rows.append(row)

run_id = wandb.run.id
wandb.finish()
accs = [r["acc"] for r in rows if "acc" in r]
print("RESULT " + json.dumps({"id": run_id, "rows": rows, "max_acc": max(accs),
                              "last_acc": accs[-1]}))
