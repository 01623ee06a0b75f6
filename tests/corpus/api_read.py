"""Log two runs, then read them back with the public Api, as an analysis script does."""
import json

import mpbackend as wandb

wandb.login()
logged = {}
for lr in (0.1, 0.01):
    run = wandb.init(entity="team", project="p", config={"lr": lr, "epochs": 4}, reinit=True)
    losses = [round(1.0 / (1 + lr * 10 * e), 6) for e in range(4)]
    for loss in losses:
        wandb.log({"loss": loss})
    wandb.summary["final_loss"] = losses[-1]
    logged[run.id] = {"lr": lr, "losses": losses}
    run.finish()

api = wandb.Api()
runs = api.runs("team/p")
first = next(iter(logged))
r = api.run(f"team/p/{first}")
df = r.history()
rows = r.history(pandas=False)
out = {"logged": logged, "first": first,
       "listed": sorted(run.id for run in runs),
       "filtered": [run.id for run in api.runs("team/p", filters={"config.lr": 0.1})],
       "df_steps": [int(s) for s in df["_step"]], "df_loss": [float(v) for v in df["loss"]],
       "rows_loss": [row["loss"] for row in rows],
       "summary_final": r.summary["final_loss"], "config_lr": r.config["lr"],
       "state": r.state, "id": r.id}
print("RESULT " + json.dumps(out))
