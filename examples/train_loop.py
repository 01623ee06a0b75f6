"""A training loop that logs to the default local store (./mpruns).

Run it:  python examples/train_loop.py
Then read it back:  python -c "import mpbackend; print(mpbackend.RunReader('<run dir>').info())"
"""

import math
import random

import mpbackend as wandb

config = {"lr": 0.01, "epochs": 5, "steps_per_epoch": 200, "batch_size": 32}
run = wandb.init(project="train-loop-example", config=config)

loss = 2.5
for epoch in range(config["epochs"]):
    for _batch in range(config["steps_per_epoch"]):
        loss = max(0.05, loss * (1 - config["lr"] * 0.5) + random.gauss(0, 0.01))
        wandb.log({"train/loss": loss, "train/lr": config["lr"], "epoch": epoch})
    wandb.log({"val/loss": loss * 1.1, "val/acc": 1 - math.exp(-epoch - 1)}, commit=False)

run.flush()
print(f"run {run.id}: {epoch + 1} epochs logged to {run.dir}")
run.finish()
print("final summary:", {k: round(v, 4) for k, v in run.summary.items() if not k.startswith("_")})
