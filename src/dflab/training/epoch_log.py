"""One line per epoch for logs that are not a terminal (cluster jobs, ``nohup``, CI).

A progress bar written to a file shows up only at the end, as one very long line of carriage
returns. When standard output is not a terminal, dflab turns the bar off and prints instead,
after every validation, a line such as::

    epoch 3/10  train/loss 0.512  val/loss 0.488  val/video_auroc 0.912  lr 3.1e-04  12.4 s  ETA 1 min 27 s
"""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from dflab.utils.report import report

SHOWN = ("train/loss_epoch", "val/loss", "val/video_auroc", "val/frame_auroc", "val/video_eer")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class EpochLines(Callback):
    """Report one line of the main metrics per epoch (rank 0 only), with the epoch time and an ETA
    (:func:`dflab.utils.report.report`: standard output unless configured otherwise).

    Args:
        monitor: the metric the run selects its checkpoint by (always shown).
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self._start = time.perf_counter()
        self._epoch_start = self._start

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        lrs = [g["lr"] for opt in trainer.optimizers for g in opt.param_groups]
        self._lr = lrs[0] if lrs else None  # the rate this epoch trains with (the schedule steps after it)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning validates inside the training epoch, so train/* and val/* of this epoch are both in.
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        names = [n for n in (*SHOWN, self.monitor) if n in metrics]
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        parts += [f"{n.replace('_epoch', '')} {float(metrics[n]):.4g}" for n in dict.fromkeys(names)]
        if getattr(self, "_lr", None) is not None:
            parts.append(f"lr {self._lr:.2g}")
        now = time.perf_counter()
        parts.append(_duration(now - self._epoch_start))
        done = trainer.current_epoch + 1
        if trainer.max_epochs and done < trainer.max_epochs:
            parts.append(f"ETA {_duration((now - self._start) / done * (trainer.max_epochs - done))}")
        report("  ".join(parts))


def interactive() -> bool:
    """Standard output is a terminal (progress bars make sense)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
