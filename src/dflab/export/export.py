"""Export a trained detector to ONNX and ``torch.export`` (.pt2), with a parity check.

The exported graph takes face crops ``(B, 3, H, W)`` as RGB in ``[0, 1]`` (normalisation is built
in) and returns ``(logit, fake_probability)``, each ``(B,)``. Both exports are run on real face
clips from the run's own dataset and compared with the eager checkpoint; the export fails when the
largest absolute difference of the logits exceeds the tolerance (``1e-4`` by default).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dflab.config import ExperimentConfig
from dflab.export.registry import RegisteredVersion, log_pyfunc_model
from dflab.export.registry import register as register_version
from dflab.export.settings import PredictSettings
from dflab.models.checkpoint import checkpoint_net, read_checkpoint
from dflab.utils.atomic import atomic_write
from dflab.utils.report import report


class ExportParityError(RuntimeError):
    """An exported model's scores differ from the checkpoint's by more than the tolerance."""


class ScoringModel(nn.Module):
    """Frame (or, for temporal networks, window) classifier returning ``(logit, probability)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.net(frames)
        return logit, torch.sigmoid(logit)


@dataclass
class ExportResult:
    """Paths of the exported files, their parity with eager PyTorch and, when registered, the
    model registry version."""

    onnx_path: Path
    pt2_path: Path
    onnx_max_abs_diff: float
    pt2_max_abs_diff: float
    num_frames: int
    registered: RegisteredVersion | None = None


def sample_frames(cfg: ExperimentConfig, count: int = 32) -> torch.Tensor:
    """Real face crops from the run's dataset (test split if present, else validation): frames
    ``(N*T, 3, H, W)``, or windows ``(N, T, 3, H, W)`` for a temporal network."""
    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.clips.dataset import collate_clips

    cfg.data.num_workers = 0
    dm = DeepfakeDataModule(cfg.data, cfg.faces, seed=cfg.seed, progress=False)
    dm.prepare_data()
    dm.setup("test")
    dataset = dm.datasets["test" if dm.has_split("test") else "val"]
    step = max(1, len(dataset) // count)
    batch = collate_clips(dataset.__getitems__(list(range(0, len(dataset), step))[:count]))
    clips = list(batch["clip"])  # clips that did not decode are left out
    if cfg.model.temporal != "none":
        return torch.stack(clips)  # (N, T, 3, H, W): temporal networks score windows
    return torch.cat(clips)  # (N*T, 3, H, W)


def export_model(net: nn.Module, frames: torch.Tensor, out_dir: str | Path, atol: float = 1e-4) -> ExportResult:
    """Export ``net`` to ``model.onnx`` and ``model.pt2`` in ``out_dir`` and check parity on ``frames``.

    Raises:
        ExportParityError: an export differs from eager PyTorch by more than ``atol``.
    """
    import onnxruntime as ort

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = ScoringModel(net).eval()
    example = frames[:2].contiguous()
    batch = torch.export.Dim("batch", min=1, max=4096)
    name = "clips" if getattr(net, "takes_clips", False) else "frames"
    with torch.no_grad():
        eager = model(frames)[0].numpy()

        program = torch.export.export(model, (example,), dynamic_shapes={"frames": {0: batch}})
        pt2_path = out / "model.pt2"
        torch.export.save(program, pt2_path)
        reloaded = torch.export.load(pt2_path).module()
        pt2 = reloaded(frames)[0].numpy()

        onnx_path = out / "model.onnx"
        torch.onnx.export(model, (example,), str(onnx_path), input_names=[name],
                          output_names=["logit", "fake_probability"],
                          dynamic_shapes={"frames": {0: batch}}, dynamo=True, verbose=False,
                          external_data=False)  # one self-contained file (weights inside)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logit"], {name: frames.numpy()})[0]

    result = ExportResult(onnx_path, pt2_path, float(np.abs(onnx_logits - eager).max()),
                          float(np.abs(pt2 - eager).max()), len(frames))
    report(f"parity on {result.num_frames} real face crops: max |logit difference| "
          f"onnx={result.onnx_max_abs_diff:.2e}  pt2={result.pt2_max_abs_diff:.2e}  (tolerance {atol:g})")
    for name, diff in (("ONNX", result.onnx_max_abs_diff), ("torch.export", result.pt2_max_abs_diff)):
        if not diff <= atol:
            raise ExportParityError(f"{name} export differs from the checkpoint by {diff:.3e} > {atol:g}")
    return result


def export_run(run_id: str | None = None, tracking_uri: str | None = None,
               out_dir: str | Path = "outputs/export", atol: float = 1e-4, register: bool = True,
               model_name: str | None = None) -> ExportResult:
    """Export the best checkpoint of an MLflow run (default: best trial of the latest sweep).

    The files and the measured differences are logged to the same MLflow run under ``export/``;
    the export is also logged as an MLflow pyfunc model under ``model/`` and, with ``register``,
    registered as a new version of ``model_name`` (default: the run's MLflow experiment name),
    with the ``champion`` alias moved to it if it is better on the run's monitored validation
    metric (see :mod:`dflab.export.registry`).
    """
    from dflab.tracking.mlflow_utils import (
        existing_store_client,
        latest_sweep_best_run,
        run_checkpoint,
    )

    client = existing_store_client(tracking_uri)
    run_id = run_id or latest_sweep_best_run(client)
    target = Path(out_dir) / run_id
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_path = run_checkpoint(client, run_id, tmp)
        stored = read_checkpoint(ckpt_path)
        cfg, net = checkpoint_net(stored, ckpt_path)
        target.mkdir(parents=True, exist_ok=True)
        # weights and config alone (no optimizer state): eager PyTorch and Grad-CAM read it
        slim = {k: stored[k] for k in ("state_dict", "dflab_config", "dflab_calibration", "dflab_mlflow_run_id")
                if k in stored}
        with atomic_write(target / "checkpoint.ckpt") as fh:
            torch.save(slim, fh)
    report(f"exporting run {run_id} ({cfg.name}, {cfg.model.backbone}) to {target}")
    result = export_model(net, sample_frames(cfg), target, atol)
    window = [cfg.data.frames_per_clip] if cfg.model.temporal != "none" else []
    calibration = stored.get("dflab_calibration")
    if calibration is None:
        report(f"run {run_id} stores no calibration: `dflab predict` will report uncalibrated scores")
    meta = {"run_id": run_id, "model_id": f"runs:/{run_id}", "experiment": cfg.name,
            "predict": PredictSettings.from_config(cfg).to_dict(), "calibration": calibration,
            "backbone": cfg.model.backbone, "temporal": cfg.model.temporal,
            "input": ["B", *window, 3, cfg.data.image_size, cfg.data.image_size],
            "input_name": "clips" if window else "frames",
            "input_range": [0.0, 1.0], "outputs": ["logit", "fake_probability"],
            "face_margin": cfg.faces.margin, "face_crop": cfg.faces.crop,
            "face_detector": cfg.faces.detector, "face_detector_options": cfg.faces.detector_options,
            "onnx_max_abs_diff": result.onnx_max_abs_diff, "pt2_max_abs_diff": result.pt2_max_abs_diff}
    (target / "export.json").write_text(json.dumps(meta, indent=2))
    for path in (result.onnx_path, result.pt2_path, target / "export.json", target / "checkpoint.ckpt"):
        client.log_artifact(run_id, str(path), "export")
    client.log_metric(run_id, "export/onnx_max_abs_diff", result.onnx_max_abs_diff)
    client.log_metric(run_id, "export/pt2_max_abs_diff", result.pt2_max_abs_diff)
    report(f"logged model.onnx, model.pt2 and export.json to MLflow run {run_id} (artifacts/export)")
    source = log_pyfunc_model(client, run_id, target)
    if register:
        metric = f"best/{cfg.monitor}"
        value = client.get_run(run_id).data.metrics.get(metric, math.nan)
        result.registered = register_version(client, model_name or cfg.logging.experiment, run_id, source, metric,
                                             value, higher_is_better=not cfg.monitor.endswith("loss"))
    return result
