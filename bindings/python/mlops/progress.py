"""Progress bars: ``CudaTrainer.fit`` shows one tqdm bar over every mini-batch step of every adapter;
``Pipeline.train(..., progress=True)`` one bar per stage (loading datasets, training, recording in MLflow).

In a terminal it is a text bar; in a Jupyter notebook (with ipywidgets installed) a widget. Turn it off
with ``CudaTrainer(progress=False)`` or ``fit(..., progress=False)``.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _tqdm_class() -> Any:
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm


class TrainingProgress:
    """A bar over ``total`` steps (a step is one mini-batch of one adapter) with the latest metrics."""

    def __init__(self, total: int, adapters: int, device: str, file: Optional[Any] = None) -> None:
        self.adapters = adapters
        self.epochs_done = 0
        self._bar = _tqdm_class()(
            total=total,
            desc=f"training {adapters} adapter{'s' if adapters != 1 else ''} on {device.split(' ')[0]}",
            unit="step",
            dynamic_ncols=True,
            leave=True,
            file=file,
        )

    def update(self, done: int, total: int) -> None:
        if self._bar.total != total:
            self._bar.total = total
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def epoch(self, name: str, epoch: int, metrics: Any) -> None:
        self.epochs_done += 1
        post = {"adapter": name, "epoch": epoch, "loss": f"{metrics.loss:.4f}"}
        if not math.isnan(metrics.val_accuracy):
            post["val_acc"] = f"{metrics.val_accuracy:.3f}"
        self._bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        self._bar.close()


class PipelineProgress:
    """``Pipeline.train`` progress: a bar per stage, called as ``progress(stage, done, total)``.

    Where the output is not a terminal or a notebook (a CI log, a file), it writes a plain line per stage
    at most every ``interval`` seconds and when the stage completes, instead of redrawing a bar.
    """

    LABELS = {"load": ("loading datasets", "adapter"), "fit": ("training", "step"),
              "record": ("recording in MLflow", "adapter")}

    def __init__(self, file: Optional[Any] = None, interval: float = 10.0) -> None:
        self._file = file
        self._interval = interval
        self._stage: Optional[str] = None
        self._bar: Any = None
        self._last = 0.0
        self._finished = False
        out = file if file is not None else sys.stderr
        self._plain = not _in_notebook() and not (hasattr(out, "isatty") and out.isatty())

    def __call__(self, stage: str, done: int, total: int) -> None:
        desc, unit = self.LABELS.get(stage, (stage, "it"))
        if self._plain:
            now = time.monotonic()
            if stage != self._stage:
                self._stage, self._last, self._finished = stage, now, False
            if not self._finished and (done >= total or now - self._last >= self._interval):
                self._last, self._finished = now, done >= total
                print(f"[mlops] {desc}: {done}/{total} {unit}s", file=self._file or sys.stderr, flush=True)
            return
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = _tqdm_class()(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True,
                                      file=self._file)
        if self._bar.total != total:
            self._bar.total = total
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._stage = None
