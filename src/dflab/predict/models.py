"""The model that scores files: a checkpoint on eager PyTorch, an export on ONNX Runtime, or an
ensemble of either, each with the crop settings and calibration it was trained with.

A ``--model`` may name
- an exported model folder (``model.onnx`` + ``export.json``, as ``dflab export`` writes it),
- a dflab checkpoint file (``.ckpt``),
- an MLflow run id (its ``export/`` artifacts when it was exported, else its best checkpoint),
- a registered model URI, ``models:/<name>@<alias>`` or ``models:/<name>/<version>``;
with none, the ``champion`` of the most recent sweep's registered model (else its best trial).
Nothing read from these files runs code: checkpoints load with ``torch.load(weights_only=True)``
and ONNX graphs are data.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dflab.export.settings import PredictSettings
from dflab.metrics.calibration import Calibration, calibrate

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class ModelLoadError(ValueError):
    """A ``--model`` that names nothing loadable (the message says which and why)."""


@dataclass
class Scorer:
    """One model, ready to score face clips.

    Attributes:
        model_id: where it came from (``runs:/<id>``, ``models:/<name>/<version>``, a path).
        settings: how it reads files (face detector, crops, clips).
        calibration: temperature and threshold chosen on validation; ``None`` when the model
            carries none (an old checkpoint, or a validation split with one class).
        runtime: ``onnxruntime (CPUExecutionProvider)``, ``torch (cuda)``, ...
    """

    model_id: str
    settings: PredictSettings
    calibration: Calibration | None
    runtime: str = ""
    members: list[Scorer] = field(default_factory=list)

    def logits(self, clips: np.ndarray) -> np.ndarray:
        """Raw logits ``(B,)`` float32 of clips ``(B, T, 3, S, S)`` float32 RGB in ``[0, 1]``
        (a frame network's clip logit is the mean of its frames')."""
        raise NotImplementedError

    def torch_net(self) -> Any:
        """The eager PyTorch network (for Grad-CAM).

        Raises:
            ModelLoadError: the model has no PyTorch weights at hand.
        """
        raise ModelLoadError(f"{self.model_id}: no PyTorch weights to explain (Grad-CAM needs the network)")


class TorchScorer(Scorer):
    """A checkpoint's network on eager PyTorch (CUDA when available)."""

    def __init__(self, model_id: str, settings: PredictSettings, calibration: Calibration | None, net: Any) -> None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        super().__init__(model_id, settings, calibration, f"torch ({device})")
        self.net, self.device = net.eval().to(device), device

    def logits(self, clips: np.ndarray) -> np.ndarray:
        import torch

        from dflab.models.ensemble import clip_logits

        with torch.inference_mode():
            out = clip_logits(self.net, torch.from_numpy(clips).to(self.device))
        return out.float().cpu().numpy()

    def torch_net(self) -> Any:
        return self.net


class OnnxScorer(Scorer):
    """An exported model on ONNX Runtime (the CUDA provider when installed, else CPU)."""

    def __init__(self, folder: Path, model_id: str | None = None) -> None:
        import onnxruntime as ort

        meta = read_export_meta(folder)
        try:
            settings = PredictSettings.from_dict(meta["predict"])
            calibration = Calibration.from_dict(meta["calibration"]) if meta.get("calibration") else None
        except (TypeError, ValueError) as err:
            raise ModelLoadError(f"{folder / 'export.json'}: {err}") from None
        wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ONNX Runtime's threads would spin after each call, taking the cores the decoder and the
        # face detector of the next file need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=wanted)
        except Exception as err:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
            detail = str(err).splitlines()[0][:200]
            raise ModelLoadError(f"{folder / 'model.onnx'}: not a model ONNX Runtime can load ({detail})") from None
        super().__init__(model_id or meta.get("model_id") or str(folder), settings, calibration,
                         f"onnxruntime ({self.session.get_providers()[0]})")
        self.folder, self.input_name = folder, meta.get("input_name", "frames")

    def logits(self, clips: np.ndarray) -> np.ndarray:
        clips = np.ascontiguousarray(clips, np.float32)
        if self.settings.temporal:
            return self.session.run(["logit"], {self.input_name: clips})[0].astype(np.float32)
        b, t = clips.shape[:2]
        out = self.session.run(["logit"], {self.input_name: clips.reshape(b * t, *clips.shape[2:])})[0]
        return out.reshape(b, t).mean(axis=1).astype(np.float32)

    def torch_net(self) -> Any:
        weights = self.folder / "checkpoint.ckpt"
        if not weights.is_file():
            return super().torch_net()
        return load_checkpoint_scorer(weights, self.model_id).torch_net()


class EnsembleScorer(Scorer):
    """Members scoring the same crops; the clip logit is the mean of the members' logits.

    The ensemble is calibrated on the members' validation records when they all scored the same
    validation videos (the mean of their video logits stands for the ensemble's); otherwise it
    has no calibration and says so.

    Raises:
        ModelLoadError: members disagree on a crop setting (names it).
    """

    def __init__(self, members: Sequence[Scorer]) -> None:
        first = members[0]
        for other in members[1:]:
            diff = first.settings.differences(other.settings)
            if diff:
                raise ModelLoadError(f"ensemble members must read the same face crops: {first.model_id} and "
                                     f"{other.model_id} differ in {'; '.join(diff)}")
        super().__init__(" + ".join(m.model_id for m in members), first.settings, _ensemble_calibration(members),
                         ", ".join(sorted({m.runtime for m in members})), list(members))

    def logits(self, clips: np.ndarray) -> np.ndarray:
        return np.mean([m.logits(clips) for m in self.members], axis=0).astype(np.float32)

    def torch_net(self) -> Any:
        raise ModelLoadError("Grad-CAM explains one network; give a single --model with --cam")


def _ensemble_calibration(members: Sequence[Scorer]) -> Calibration | None:
    import torch

    cals = [m.calibration for m in members]
    if any(c is None for c in cals) or len({tuple(c.val_keys) for c in cals if c}) != 1:
        return None
    first = cals[0]
    assert first is not None
    logits = torch.tensor(np.mean([c.val_logits for c in cals if c], axis=0), dtype=torch.float64)
    return calibrate(logits, torch.tensor(first.val_labels), list(first.val_keys), first.rule,
                     first.target_fpr or 0.05)


def read_export_meta(folder: Path) -> dict[str, Any]:
    """The ``export.json`` of an export folder.

    Raises:
        ModelLoadError: no ``model.onnx`` / ``export.json``, or an export written before
            exports recorded their crop settings.
    """
    meta_path = folder / "export.json"
    if not meta_path.is_file() or not (folder / "model.onnx").is_file():
        raise ModelLoadError(f"{folder}: not an exported model (no model.onnx and export.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{meta_path}: unreadable ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("predict"), dict):
        raise ModelLoadError(f"{meta_path}: records no crop settings (exported by an older dflab); "
                             "export the run again with `dflab export`")
    return meta


def load_checkpoint_scorer(path: Path, model_id: str | None = None) -> TorchScorer:
    """A checkpoint file on eager PyTorch, with its stored calibration."""
    from dflab.models.checkpoint import CheckpointError, checkpoint_net, read_checkpoint

    try:
        ckpt = read_checkpoint(path)
        cfg, net = checkpoint_net(ckpt, path)
        stored = ckpt.get("dflab_calibration")
        calibration = Calibration.from_dict(stored) if stored else None
    except (CheckpointError, ValueError) as err:
        raise ModelLoadError(str(err)) from None
    return TorchScorer(model_id or str(path), PredictSettings.from_config(cfg), calibration, net)


def find_export(folder: Path) -> Path | None:
    hits = sorted(p.parent for p in folder.rglob("export.json") if (p.parent / "model.onnx").is_file())
    return hits[0] if hits else None


def load_scorer(spec: str | None, tracking_uri: str | None = None, workdir: str | Path | None = None) -> Scorer:
    """The model a ``--model`` value names (see the module docstring); ``None``: the latest
    sweep's champion.

    Args:
        spec: folder, checkpoint, run id or ``models:/`` URI.
        tracking_uri: MLflow store for run ids and registered models (default: dflab's).
        workdir: where downloaded artifacts go (default: a temporary folder kept for the
            process's life).

    Raises:
        ModelLoadError: nothing loadable by that name (the message says what was tried).
    """
    path = Path(spec) if spec else None
    if path is not None and path.is_dir():
        found = path if (path / "export.json").is_file() else find_export(path)
        if found is None:
            raise ModelLoadError(f"{spec}: a folder without an exported model (no model.onnx with export.json)")
        return OnnxScorer(found, str(path))
    if path is not None and path.is_file():
        return load_checkpoint_scorer(path)
    if spec and (spec.endswith((".ckpt", ".onnx", ".json")) or "/" in spec) and not spec.startswith("models:/"):
        raise ModelLoadError(f"{spec}: no such file or folder")
    folder = Path(workdir or tempfile.mkdtemp(prefix="dflab-model-"))
    return _from_tracking(spec, tracking_uri, folder)


def _from_tracking(spec: str | None, tracking_uri: str | None, folder: Path) -> Scorer:
    from mlflow.exceptions import MlflowException

    from dflab.tracking.mlflow_utils import (
        RunLookupError,
        TrackingError,
        existing_store_client,
        run_checkpoint,
    )

    try:
        store = existing_store_client(tracking_uri)
    except TrackingError as err:
        raise ModelLoadError(f"{err}; or give --model an export folder or checkpoint") from None
    if spec is None:
        spec = latest_champion(store)
    if spec.startswith("models:/"):
        from mlflow.artifacts import download_artifacts

        version = _model_version(store, spec)
        try:  # the version's files, fetched from the store itself (not MLflow's global registry URI)
            source = store.get_model_version_download_uri(version.name, version.version)
            local = Path(download_artifacts(artifact_uri=source, dst_path=str(folder), tracking_uri=store.tracking_uri))
        except (MlflowException, OSError) as err:
            raise ModelLoadError(f"{spec}: its files cannot be fetched ({str(err).splitlines()[0][:200]})") from None
        found = find_export(local)
        if found is None:
            raise ModelLoadError(f"{spec}: the registered model holds no dflab export")
        return OnnxScorer(found, f"models:/{version.name}/{version.version}")
    if not RUN_ID.match(spec):
        raise ModelLoadError(f"{spec}: not a file, a folder, an MLflow run id or a models:/ URI")
    try:
        try:
            local = Path(store.download_artifacts(spec, "export", str(folder)))
            found = find_export(local)
        except (MlflowException, OSError):
            found = None
        if found is not None:
            return OnnxScorer(found, f"runs:/{spec}")
        return load_checkpoint_scorer(run_checkpoint(store, spec, folder), f"runs:/{spec}")
    except RunLookupError as err:
        raise ModelLoadError(str(err)) from None
    except MlflowException:
        raise ModelLoadError(f"MLflow run {spec!r} not found in {store.tracking_uri}") from None


def latest_champion(store: Any) -> str:
    """``models:/<name>@champion`` of the most recent sweep that registered a model, else the
    run id of its best trial.

    Raises:
        ModelLoadError: no finished sweep in the store.
    """
    from dflab.tracking.mlflow_utils import RunLookupError, latest_sweep_best_run

    experiments = [e.experiment_id for e in store.search_experiments()]
    runs = store.search_runs(experiments, filter_string="tags.`dflab.kind` = 'sweep'",
                              order_by=["attributes.end_time DESC"], max_results=20) if experiments else []
    for run in runs:
        name = run.data.tags.get("dflab.registered_model")
        if name:
            return f"models:/{name}@champion"
    try:
        return latest_sweep_best_run(store)
    except RunLookupError:
        raise ModelLoadError(f"no --model given and no finished sweep in {store.tracking_uri}; run `make sweep` "
                             "first or pass --model (MODEL= with make)") from None


def _model_version(store: Any, spec: str) -> Any:
    """The model version a ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` URI names.

    Raises:
        ModelLoadError: no such registered model, alias or version in the store.
    """
    from mlflow.exceptions import MlflowException

    rest = spec.removeprefix("models:/")
    name, sep, alias = rest.partition("@")
    if not sep:
        name, _, alias = rest.rpartition("/")
    if not name or not alias:
        raise ModelLoadError(f"{spec}: expected models:/<name>@<alias> or models:/<name>/<version>")
    try:
        if sep:
            return store.get_model_version_by_alias(name, alias)
        return store.get_model_version(name, alias)
    except MlflowException as err:
        raise ModelLoadError(f"{spec}: not found in {store.tracking_uri} ({str(err).splitlines()[0][:200]})") from None


def load_models(specs: Sequence[str], tracking_uri: str | None = None) -> Scorer:
    """One scorer for every ``--model`` (an ensemble for several; see :class:`EnsembleScorer`)."""
    scorers = [load_scorer(s, tracking_uri) for s in specs] if specs else [load_scorer(None, tracking_uri)]
    return scorers[0] if len(scorers) == 1 else EnsembleScorer(scorers)
