"""wandb.plot's built-in charts from wandb Tables: line, scatter, bar, histogram and a
multi-line line_series, as the custom charts guide logs them."""
import json
import math

import numpy as np

import mpbackend as wandb

run = wandb.init(project="charts-demo", config={"n_points": 20})
n = run.config.n_points
xs = [i / 4 for i in range(n)]

line_data = [[x, math.sin(x)] for x in xs]
line_table = wandb.Table(data=line_data, columns=["x", "y"])
wandb.log({"sine": wandb.plot.line(line_table, "x", "y", title="sin(x)")})

rng = np.random.default_rng(3)
points = rng.normal(size=(n, 2)).round(4).tolist()
scatter_table = wandb.Table(data=points, columns=["class_x", "class_y"])
wandb.log({"scatter": wandb.plot.scatter(scatter_table, "class_x", "class_y",
                                         title="two features")})

bar_data = [["cat", 12], ["dog", 7], ["bird", 3]]
bar_table = wandb.Table(data=bar_data, columns=["label", "value"])
wandb.log({"label_counts": wandb.plot.bar(bar_table, "label", "value", title="labels")})

scores = [[float(s)] for s in rng.beta(2, 5, size=n).round(4)]
hist_table = wandb.Table(data=scores, columns=["scores"])
wandb.log({"score_hist": wandb.plot.histogram(hist_table, "scores", title="scores")})

ys = [[x ** 2 for x in xs[:6]], [2 * x for x in xs[:6]]]
wandb.log({"curves": wandb.plot.line_series(xs=xs[:6], ys=ys, keys=["square", "double"],
                                            title="two curves", xname="x")})

out = {"id": run.id, "line": line_data, "scatter": points, "bar": bar_data,
       "scores": scores, "xs": xs[:6], "ys": ys}
wandb.finish()
print("RESULT " + json.dumps(out))
