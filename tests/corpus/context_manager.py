"""`with wandb.init() as run:` finishes the run at the end of the block, or fails it."""
import json
import math

import mpbackend as wandb

with wandb.init(project="ctx-demo", config={"n": 5}, job_type="eval") as run:
    rows = []
    for i in range(run.config.n):
        row = {"x": i, "sqrt": math.sqrt(i)}
        run.log(row)
        rows.append(row)
    run.summary["total"] = sum(r["sqrt"] for r in rows)
    ok_id = run.id
after_ok = wandb.run is None

try:
    with wandb.init(project="ctx-demo", config={"n": 2}) as run:
        run.log({"x": 0})
        bad_id = run.id
        raise ValueError("bad batch")
except ValueError:
    pass

print("RESULT " + json.dumps({"ok_id": ok_id, "bad_id": bad_id, "rows": rows,
                              "total": sum(r["sqrt"] for r in rows), "after_ok": after_ok,
                              "after_bad": wandb.run is None}))
