"""wandb.alert() when the validation accuracy stays below a threshold."""
import json

import mpbackend as wandb

THRESHOLD = 0.8
run = wandb.init(project="alert-demo", config={"threshold": THRESHOLD, "patience": 3})
accs = [0.55, 0.62, 0.71]
alerts = []
below = 0
for epoch, acc in enumerate(accs):
    wandb.log({"epoch": epoch, "acc": acc})
    below = below + 1 if acc < THRESHOLD else 0
    if below == wandb.config.patience:
        title = "Low accuracy"
        text = f"Accuracy {acc} is below the acceptable threshold {THRESHOLD}"
        wandb.alert(title=title, text=text)
        alerts.append({"title": title, "text": text})

out = {"id": run.id, "accs": accs, "alerts": alerts}
wandb.finish()
print("RESULT " + json.dumps(out))
