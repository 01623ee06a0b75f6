"""A tiny Keras 3 model on the torch backend, fitted with MpbackendMetricsLogger
(tests/test_transformers.py)."""
import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: no TensorFlow

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mpbackend  # noqa: E402
from mpbackend.integrations.keras import MpbackendMetricsLogger  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
logger = MpbackendMetricsLogger(log_freq=2, save_model=True, project="keras")
history = model.fit(x, y, batch_size=16, epochs=3, validation_split=0.25, verbose=0,
                    callbacks=[logger])
run = logger.run
run.finish()
stored = mpbackend.Api().run(f"keras/{run.id}")
rows = stored.history(pandas=False)
print("RESULT " + json.dumps({
    "history": history.history, "backend": keras.backend.backend(),
    "epochs": [r for r in rows if "epoch/epoch" in r],
    "batches": [r["batch/batch_step"] for r in rows if "batch/batch_step" in r],
    "artifacts": [(a.name, a.aliases) for a in stored.logged_artifacts()]}))
