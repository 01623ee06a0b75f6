"""A job launched by a scheduler that sets WANDB_PROJECT, WANDB_NAME and WANDB_TAGS: the
script itself names no project, run or tags."""
import json
import random

import mpbackend as wandb


def evaluate(seed):
    random.seed(seed)
    return [round(random.uniform(0.5, 1.0), 4) for _ in range(4)]


wandb.init(config={"seed": 1, "split": "validation"})
scores = evaluate(wandb.config.seed)
for i, score in enumerate(scores):
    wandb.log({"score": score, "shard": i})
wandb.summary["mean_score"] = sum(scores) / len(scores)
out = {"id": wandb.run.id, "project": wandb.run.project, "name": wandb.run.name,
       "tags": list(wandb.run.tags), "scores": scores,
       "mean_score": sum(scores) / len(scores)}
wandb.finish()
print("RESULT " + json.dumps(out))
