"""A pandas DataFrame as a wandb.Table (dataframe=), grown with add_column and read with
get_column, logged at the end; the table is also versioned in an artifact
(artifact.add(table, "name")) and read back by a later run with .get("name")."""
import json

import numpy as np
import pandas as pd

import mpbackend as wandb

rng = np.random.default_rng(21)
df = pd.DataFrame({
    "city": ["Oslo", "Lima", "Pune", "Kyiv", "Quito", "Accra"],
    "population_m": [0.7, 10.9, 7.4, 2.9, 2.8, 2.6],
    "coastal": [True, True, False, False, False, True],
    "year": [2024, 2023, 2024, 2022, 2023, 2024],
})

with wandb.init(project="tables-demo", job_type="build-table") as run:
    table = wandb.Table(dataframe=df)
    table.add_column("density_index", rng.uniform(size=len(df)).round(3).tolist())
    populations = table.get_column("population_m")
    density = table.get_column("density_index", convert_to="numpy")
    run.summary["total_population_m"] = round(sum(populations), 2)
    art = wandb.Artifact("city-stats", type="dataset")
    art.add(table, "cities")
    run.log_artifact(art)
    wandb.log({"cities": table})
    built = {"id": run.id, "columns": table.columns, "data": table.data,
             "density": density.tolist(), "populations": populations}

with wandb.init(project="tables-demo", job_type="analysis") as run:
    cities = run.use_artifact("city-stats:latest").get("cities")
    big = [c for c, p in zip(cities.get_column("city"), cities.get_column("population_m"))
           if p > 5]
    wandb.log({"n_big_cities": len(big)})
    read = {"id": run.id, "columns": cities.columns, "data": cities.data, "big": big}

print("RESULT " + json.dumps({"built": built, "read": read}, default=lambda v: v.item()))
