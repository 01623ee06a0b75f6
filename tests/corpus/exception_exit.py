"""An uncaught exception in the training loop: wandb marks the run failed (exit code 1)
and the script exits 1 with its traceback."""
import json

import mpbackend as wandb


def load_batch(i):
    if i == 3:
        raise RuntimeError("CUDA out of memory (simulated)")
    return [i * 0.5, i * 0.25]


run = wandb.init(project="crash-demo", config={"batches": 5})
values = []
for batch in range(wandb.config.batches):
    if batch == 3:
        print("RESULT " + json.dumps({"id": run.id, "values": values}), flush=True)
    data = load_batch(batch)
    value = sum(data)
    wandb.log({"batch": batch, "value": value})
    values.append(value)
wandb.finish()
