"""``dflab predict``: score videos and images with a trained detector and write what it found.

Writes into the output folder
- ``predictions.csv``: one row per file (path, status, calibrated score, verdict, threshold, faces,
  reason when not scored);
- ``predictions.json``: the model, threshold and temperature used, and per file every face
  track's score with its per-frame scores, boxes, frame indices and timestamps;
- with ``annotate``, ``annotated/<name>.mp4`` per video (H.264, plays in a browser) and
  ``annotated/<name>.png`` per image.

Both prediction files are rewritten as files finish, so an interrupted run keeps what it scored.
A file that cannot be read or shows no face is listed with its reason and has no score.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dflab.predict.inputs import expand_inputs
from dflab.predict.models import ModelLoadError, Scorer, load_models
from dflab.predict.results import FileResult
from dflab.predict.score import Scored, model_detector, score_file
from dflab.utils.atomic import atomic_write
from dflab.utils.report import report

log = logging.getLogger(__name__)
CSV_FIELDS = ("path", "kind", "status", "score", "verdict", "threshold", "faces", "frames_scored", "seconds",
              "reason", "model")
SAVE_EVERY_S = 10.0


@dataclass
class Threshold:
    """The verdict threshold on the calibrated probability and where it comes from."""

    value: float
    source: str


def choose_threshold(scorer: Scorer, threshold: float | None = None, target_fpr: float | None = None) -> Threshold:
    """The threshold: given, chosen on the model's validation scores for ``target_fpr``, or the
    one stored with the model (its EER point by default).

    Raises:
        ModelLoadError: ``target_fpr`` for a model without validation scores.
    """
    cal = scorer.calibration
    if threshold is not None:
        return Threshold(threshold, "given (--threshold)")
    if target_fpr is not None:
        if cal is None:
            raise ModelLoadError(f"--target-fpr: {scorer.model_id} records no validation scores to choose a "
                                 "threshold on; pass --threshold instead")
        cal = cal.rethreshold("fpr", target_fpr)
        return Threshold(cal.threshold, f"false-positive rate <= {target_fpr:g} on {cal.n_videos} validation videos")
    if cal is None:
        log.warning("%s records no calibration: scores are uncalibrated sigmoid outputs and the verdict "
                    "threshold is 0.5; retrain, or pass --threshold", scorer.model_id)
        return Threshold(0.5, "0.5: the model records no validation threshold (uncalibrated)")
    what = "equal-error-rate point" if cal.rule == "eer" else f"false-positive rate <= {cal.target_fpr:g}"
    return Threshold(cal.threshold, f"{what} on {cal.n_videos} validation videos")


@dataclass
class Prediction:
    """What :func:`predict` did: the results in input order and where they were written."""

    results: list[FileResult]
    model_id: str
    threshold: Threshold
    csv_path: Path
    json_path: Path
    annotated: dict[str, Path] = field(default_factory=dict)


def _annotated_name(path: str, kind: str, used: set[str]) -> str:
    stem = Path(path).stem or "file"
    suffix = ".png" if kind == "image" else ".mp4"
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{suffix}"
    used.add(name)
    return name


def _write(out: Path, scorer: Scorer, threshold: Threshold, results: Sequence[FileResult],
           annotated: dict[str, Path], notes: dict[str, Any]) -> tuple[Path, Path]:
    csv_path, json_path = out / "predictions.csv", out / "predictions.json"
    with atomic_write(csv_path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow({"path": r.path, "kind": r.kind, "status": r.status,
                             "score": "" if r.score is None else f"{r.score:.6f}", "verdict": r.verdict or "",
                             "threshold": f"{threshold.value:.6f}", "faces": len(r.tracks),
                             "frames_scored": len({f.frame for t in r.tracks for f in t.frames}),
                             "seconds": f"{r.seconds:.3f}",
                             "reason": r.reason, "model": scorer.model_id})
    cal = scorer.calibration
    doc: dict[str, Any] = {
        "model": scorer.model_id, "members": [m.model_id for m in scorer.members] or [scorer.model_id],
        "runtime": scorer.runtime, "threshold": threshold.value, "threshold_source": threshold.source,
        "temperature": None if cal is None else cal.temperature, "settings": scorer.settings.to_dict(),
        "score": "calibrated fake probability; verdict fake when score >= threshold",
        **notes,
        "files": [dict(r.to_dict(), annotated=str(annotated[r.path]) if r.path in annotated else None)
                  for r in results],
    }
    with atomic_write(json_path, "w") as fh:
        json.dump(doc, fh, indent=1)
    return csv_path, json_path


def results_table(results: Sequence[FileResult], threshold: Threshold) -> str:
    """The summary table printed at the end."""
    from rich.table import Table

    from dflab.utils.tables import render_table

    table = Table(title=f"Predictions (threshold {threshold.value:.3f}: {threshold.source})")
    for name, justify in (("file", "left"), ("faces", "right"), ("score", "right"), ("verdict", "left"),
                          ("note", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(r.path, str(len(r.tracks)) if r.scored else "-",
                      "-" if r.score is None else f"{r.score:.3f}",
                      (r.verdict or r.status).upper() if r.scored else r.status, r.reason[:80])
    counts = {k: sum(r.verdict == k for r in results) for k in ("fake", "real")}
    missed = sum(not r.scored for r in results)
    table.caption = f"{len(results)} files: {counts['fake']} fake, {counts['real']} real, {missed} not scored"
    return render_table(table, width=160)


def _heatmaps(scored: Scored, net: Any) -> dict[tuple[int, int], Any]:
    import numpy as np
    import torch

    from dflab.predict.cam import grad_cam

    if not scored.crops:
        return {}
    keys = list(scored.crops)
    heat = grad_cam(net, torch.from_numpy(np.stack([scored.crops[k] for k in keys])))
    return dict(zip(keys, heat, strict=True))


def _annotate(scored: Scored, target: Path, threshold: float, scorer: Scorer, net: Any) -> Path:
    from dflab.predict.annotate import annotate_image, annotate_video

    cams = _heatmaps(scored, net) if net is not None else None
    margin = scorer.settings.margin
    if scored.result.kind == "image":
        assert scored.image is not None
        return annotate_image(scored.result, scored.image, target, threshold, margin=margin, cams=cams)
    points = scored.faces.access_points if scored.faces is not None else None
    return annotate_video(scored.result, target, threshold, margin=margin, cams=cams, access_points=points)


def predict(paths: Sequence[str | Path], models: Sequence[str] = (), out: str | Path = "outputs/predict",
            frames: int | None = None, annotate: bool = False, cam: bool = False, threshold: float | None = None,
            target_fpr: float | None = None, tracking_uri: str | None = None, progress: bool = True,
            threads: int = 2) -> Prediction:
    """Score every file ``paths`` names with ``models`` and write the predictions into ``out``.

    Args:
        paths: video/image files, folders (recursive) and globs; arguments that name nothing are
            skipped with a warning and listed as ``skipped_inputs`` in ``predictions.json``.
        models: ``--model`` values (several: an ensemble); empty: the latest sweep's champion.
        out: output folder.
        frames: frames scored per face track (default: as at evaluation).
        annotate: write annotated videos and images.
        cam: overlay Grad-CAM heat maps on the annotated faces (frame networks; implies annotate).
        threshold: verdict threshold on the calibrated probability (default: the model's).
        target_fpr: choose the threshold for this false-positive rate on the model's validation
            scores instead.
        tracking_uri: MLflow store for run ids and registered models.
        progress: a progress bar with ETA.
        threads: decoder (and face detector) threads.

    Raises:
        InputError: a path names nothing to score.
        ModelLoadError: a model cannot be loaded.
    """
    from tqdm.auto import tqdm


    items, problems = expand_inputs(paths, exclude=out)
    for line in problems:
        log.warning("skipped: %s", line)
    scorer = load_models(models, tracking_uri)
    chosen = choose_threshold(scorer, threshold, target_fpr)
    net = scorer.torch_net() if cam else None
    if net is not None:
        from dflab.predict.cam import CamError

        if scorer.settings.temporal:
            raise CamError(f"--cam: {scorer.model_id} is a temporal network; Grad-CAM here explains frame networks")
    annotate = annotate or cam
    s = scorer.settings
    detector = model_detector(scorer, threads)
    cal = scorer.calibration
    report(f"model {scorer.model_id} on {scorer.runtime}: {s.backbone}, {s.image_size}px {s.crop} crops, "
           f"{s.detector} faces; temperature {cal.temperature:.3f}" if cal else
           f"model {scorer.model_id} on {scorer.runtime}: {s.backbone}, uncalibrated")
    report(f"verdict threshold {chosen.value:.4f} ({chosen.source}); scoring {len(items)} files")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[FileResult] = []
    annotated: dict[str, Path] = {}
    used: set[str] = set()
    saved = time.monotonic()
    notes = {"skipped_inputs": problems, "interrupted": False, "files_given": len(items)}
    try:
        for item in tqdm(items, desc="predict", unit="file", disable=not progress, dynamic_ncols=True):
            scored = score_file(item.path, item.kind, scorer, detector, chosen.value, frames, threads,
                                net is not None)
            results.append(scored.result)
            if annotate and ((scored.faces is not None and scored.faces.error is None) or scored.image is not None):
                target = out / "annotated" / _annotated_name(item.path, item.kind, used)
                annotated[item.path] = _annotate(scored, target, chosen.value, scorer, net)
            if time.monotonic() - saved > SAVE_EVERY_S:
                _write(out, scorer, chosen, results, annotated, notes)
                saved = time.monotonic()
    except KeyboardInterrupt:
        notes["interrupted"] = True
        csv_path, json_path = _write(out, scorer, chosen, results, annotated, notes)
        report(f"interrupted: {len(results)} of {len(items)} files done, written to {csv_path} and {json_path}")
        raise
    csv_path, json_path = _write(out, scorer, chosen, results, annotated, notes)
    report(results_table(results, chosen))
    report(f"predictions: {csv_path} and {json_path}" + (f"; annotated files in {out / 'annotated'}"
                                                          if annotated else ""))
    return Prediction(results, scorer.model_id, chosen, csv_path, json_path, annotated)
