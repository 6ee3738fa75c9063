"""What a finished training run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunResult:
    """What a finished run leaves behind.

    Attributes:
        run_id: MLflow run id (``None`` on non-zero DDP ranks).
        best_score: best value of the monitored validation metric.
        best_checkpoint: local path of the best checkpoint.
        metrics: final logged metrics (validation of the best checkpoint and test, if any).
        calibration: the :class:`~dflab.metrics.calibration.Calibration` fitted on the
            validation videos and stored in the best checkpoint (``None`` if none could be).
    """

    run_id: str | None
    best_score: float
    best_checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)
    calibration: Any = None
