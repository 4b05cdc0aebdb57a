"""02: train several adapters at once, predict, save and load one.

C++ twin: examples/cpp/02_train.cpp
"""

import pathlib
import tempfile

import numpy as np

import mlops


def customer_data(customer: int, rows: int = 400, cols: int = 8) -> mlops.Dataset:
    """Two Gaussian blobs per customer, shifted differently for each."""
    rng = np.random.default_rng(customer)
    y = (np.arange(rows) % 2).astype(np.int32)
    X = rng.normal(size=(rows, cols)).astype(np.float32)
    X[:, customer % cols] += np.where(y == 1, 1.5, -1.5).astype(np.float32)
    return mlops.Dataset(X, y, classes=["no", "yes"])


trainer = mlops.CudaTrainer(device="auto", seed=0, progress=False)
print("device  ", trainer.device)
specs = [mlops.AdapterSpec(name=f"customer-{c}", dataset=customer_data(c), epochs=20, batch_size=32,
                           learning_rate=0.05) for c in (1, 2, 3)]
for t in trainer.fit(specs):
    print(t.name, " val_accuracy", round(t.history.epochs[-1].val_accuracy, 3))
    last = t

with tempfile.TemporaryDirectory() as tmp:
    path = pathlib.Path(tmp) / "adapter.safetensors"
    last.adapter.save(path)
    loaded = mlops.Adapter.load(path)
    labels = loaded.predict(specs[-1].dataset.X[:4])  # labels typed like the training labels
    print("loaded  ", path.name, "first predictions:", " ".join(str(label) for label in labels))
