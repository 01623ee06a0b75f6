"""Reading and extending wandb.config: attributes, items, update(), get()."""
import json

import mpbackend as wandb

defaults = {"lr": 0.01, "batch_size": 16, "epochs": 2}
wandb.init(project="config-demo", config=defaults)
config = wandb.config
lr = config.lr
batch_size = wandb.config["batch_size"]
momentum = config.get("momentum", 0.9)
wandb.config.update({"optimizer": "sgd", "momentum": momentum})
wandb.config.dropout = 0.1
steps = 0
for epoch in range(config.epochs):
    for _ in range(64 // batch_size):
        steps += 1
        wandb.log({"lr": lr * 0.5 ** epoch, "step_in_run": steps})
out = {"id": wandb.run.id, "lr": lr, "batch_size": batch_size, "steps": steps,
       "config": dict(wandb.config.items()),
       "expected": {**defaults, "optimizer": "sgd", "momentum": 0.9, "dropout": 0.1}}
wandb.finish()
print("RESULT " + json.dumps(out))
