"""Nested dicts in log() and in the config, and the nested summary they make."""
import json

import mpbackend as wandb

config = {"optimizer": {"name": "adam", "betas": [0.9, 0.999]}, "model": {"depth": 2}}
run = wandb.init(project="nested-demo", config=config)
assert wandb.config.optimizer["name"] == "adam"


def evaluate(epoch):
    return round(1.1 - 0.2 * epoch, 6)


train = [(1.0, 0.5), (0.8, 0.6), (0.5, 0.75)]
val = []
for epoch, (loss, acc) in enumerate(train):
    vloss = evaluate(epoch)
    val.append(vloss)
    wandb.log({"train": {"loss": loss, "acc": acc}, "val": {"loss": vloss}, "epoch": epoch})

live = {"train_loss": run.summary["train"]["loss"], "val_loss": run.summary["val"]["loss"]}
run_id = run.id
wandb.finish()
print("RESULT " + json.dumps({"id": run_id, "config": config, "train": train, "val": val,
                              "live": live}))
