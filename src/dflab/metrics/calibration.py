"""Post-hoc calibration and a verdict threshold for the binary real/fake detector.

Computed at the end of training on VIDEO-level validation scores: one temperature ``T`` is fitted
so that ``sigmoid(logit / T)`` minimises the validation log loss (temperature scaling; Guo et
al., "On Calibration of Modern Neural Networks", ICML 2017), the expected calibration error is
reported before and after (ECE with equal-width bins; Naeini et al., "Obtaining Well Calibrated
Probabilities Using Bayesian Binning", AAAI 2015), and a threshold on the calibrated probability
is chosen at the equal-error-rate point or under a false-positive budget. Temperature scaling is
monotone, so it changes probabilities, never the ranking (AUROC). Label 1 is fake; a video is
called fake when its calibrated probability is ``>= threshold``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

THRESHOLD_RULES = ("eer", "fpr")
T_MIN, T_MAX = 0.05, 20.0
_EPS = 1e-6

_L = TypeVar("_L", torch.Tensor, np.ndarray, float)

# Calibration.from_dict's schema: field -> allowed type(s) of the value, or of a list's items.
_NUM = (int, float)
_SCALARS: dict[str, type | tuple[type, ...]] = {
    "temperature": _NUM, "threshold": _NUM, "rule": str, "target_fpr": (*_NUM, type(None)),
    "ece_before": _NUM, "ece_after": _NUM, "n_videos": int, "n_fake": int, "metric": str,
}  # fmt: skip
_LISTS: dict[str, type | tuple[type, ...]] = {"val_keys": str, "val_logits": _NUM, "val_labels": int}  # fmt: skip


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def video_logits(probs: torch.Tensor) -> torch.Tensor:
    """Logits of ``(N,)`` fake probabilities, clamped to ``[1e-6, 1 - 1e-6]``; ``(N,)`` float64."""
    return torch.logit(probs.detach().to(torch.float64), eps=_EPS)


def _check_binary(scores: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    if scores.ndim != 1 or labels.shape != scores.shape:
        shapes = f"{tuple(scores.shape)} and {tuple(labels.shape)}"
        raise ValueError(f"{what}: expected two (N,) tensors, got {shapes}")
    if scores.numel() < 2:
        raise ValueError(f"{what}: need at least 2 videos, got {scores.numel()} (empty input?)")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{what}: scores contain NaN or infinite values")
    uniq = set(labels.long().unique().tolist())
    if not uniq <= {0, 1}:
        raise ValueError(f"{what}: labels must be 0 (real) or 1 (fake), got values {sorted(uniq)}")
    if len(uniq) < 2:
        raise ValueError(f"{what}: only one class present (label {uniq.pop()}), need both")


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Temperature ``T > 0`` minimising the binary NLL of ``sigmoid(logits / T)``.

    Optimised over ``log T`` from ``T = 1`` with L-BFGS (strong-Wolfe line search) in float64, so
    the result is deterministic. Perfectly separated data drive ``T`` to 0: the result is clamped
    to ``[0.05, 20]``.

    Args:
        logits: ``(N,)`` raw (uncalibrated) logits.
        labels: ``(N,)`` 0/1 labels, 1 = fake.
        max_iter: L-BFGS iterations.

    Raises:
        ValueError: fewer than 2 values, a single class, labels other than 0/1, or non-finite logits.
    """
    _check_binary(logits, labels, "fit_temperature")
    z = logits.detach().to(torch.float64).cpu()
    y = labels.detach().to(torch.float64).cpu()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z * torch.exp(-log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = math.exp(log_t.item())
    return float(min(max(t, T_MIN), T_MAX)) if math.isfinite(t) else T_MIN


def apply_temperature(logits: _L, temperature: float) -> _L:
    """``logits / temperature`` for a tensor, numpy array or float (same type back)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature}")
    return logits / temperature


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10
) -> float:
    """ECE (L1) of ``(N,)`` fake probabilities, torchmetrics' ``binary_calibration_error``.

    For binary input torchmetrics bins the positive-class (fake) probability itself, not the
    top-label confidence ``max(p, 1 - p)``: ``n_bins`` equal-width bins ``[k/n, (k+1)/n)`` (an
    exact 1.0 gets a bin of its own), comparing each bin's mean probability with its fraction of
    fakes, weighted by the bin's share of samples. :func:`reliability_diagram` draws the same.

    Raises:
        ValueError: empty input, or probabilities outside ``[0, 1]`` (torchmetrics would
            silently take them for logits).
    """
    if probs.numel() == 0:
        raise ValueError("expected_calibration_error: empty input")
    if not ((probs >= 0) & (probs <= 1)).all():
        raise ValueError("expected_calibration_error: probabilities must lie in [0, 1]")
    from torchmetrics.functional.classification import (
        binary_calibration_error,  # 2.5 s import: on use
    )

    return float(binary_calibration_error(probs, labels.long(), n_bins=n_bins, norm="l1"))


def choose_threshold(
    probs: torch.Tensor, labels: torch.Tensor, rule: str = "eer", target_fpr: float = 0.05
) -> float:
    """Threshold on ``(N,)`` fake probabilities; a video is called fake when ``prob >= threshold``.

    ``"eer"``: the ROC point where the false-positive rate and the false-negative rate
    ``1 - TPR`` are closest (the equal-error-rate point; the highest threshold on ties).
    ``"fpr"``: the lowest threshold whose FPR is ``<= target_fpr`` (the highest TPR within the
    budget). When that is "call nothing fake", the threshold lies just above the highest score
    (clamped to 1.0, so a score of exactly 1.0 still counts as fake).

    Returns:
        The threshold, in ``[0, 1]``.

    Raises:
        ValueError: unknown rule, ``target_fpr`` outside (0, 1), empty input, a single class,
            or probabilities outside ``[0, 1]``.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {THRESHOLD_RULES}")
    if rule == "fpr" and not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target_fpr must lie strictly between 0 and 1, got {target_fpr}")
    _check_binary(probs, labels, "choose_threshold")
    if not ((probs >= 0) & (probs <= 1)).all():
        raise ValueError("choose_threshold: probabilities must lie in [0, 1]")
    labels = labels.long()
    from torchmetrics.functional.classification import binary_roc

    fpr, tpr, thresholds = binary_roc(probs, labels)
    # Rates as counts (exact), so an FPR of exactly target_fpr is not lost to float32 rounding.
    n_neg, n_pos = int((labels == 0).sum()), int((labels == 1).sum())
    fp = torch.round(fpr.double() * n_neg)
    fn = n_pos - torch.round(tpr.double() * n_pos)
    if rule == "eer":
        idx = int(torch.argmin((fp / n_neg - fn / n_pos).abs()))
    else:
        idx = int(torch.nonzero(fp <= math.floor(target_fpr * n_neg + 1e-9)).max())
    # Point 0 is torchmetrics' added "nothing is fake" point (threshold 1.0): go above the top score.
    th = float(thresholds[1]) + _EPS if idx == 0 else float(thresholds[idx])
    return min(max(th, 0.0), 1.0)


@dataclass
class Calibration:
    """Temperature and verdict threshold fitted on video-level validation scores.

    ``to_dict`` holds plain data only (for checkpoints loaded with ``weights_only=True`` and JSON).
    """

    temperature: float  # divide raw logits by this
    threshold: float  # on the calibrated probability; score >= threshold -> fake
    rule: str  # "eer" or "fpr"
    target_fpr: float | None  # the FPR budget when rule == "fpr"
    ece_before: float
    ece_after: float
    n_videos: int
    n_fake: int
    val_keys: list[str]  # validation video ids, same order as the two lists below
    val_logits: list[float]  # raw (uncalibrated) video logits
    val_labels: list[int]
    metric: str = "val/video"  # what the scores are

    def to_dict(self) -> dict[str, Any]:
        """Plain floats, ints, strings and lists (copies)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict`; raises ValueError naming a missing or ill-typed key."""
        for key in (*_SCALARS, *_LISTS):
            if key not in data and key != "metric":
                raise ValueError(f"Calibration: missing key {key!r}")
        bad = [k for k, kind in _SCALARS.items() if k in data and not _is(data[k], kind)]
        bad += [
            k
            for k, kind in _LISTS.items()
            if not isinstance(data[k], list | tuple) or not all(_is(v, kind) for v in data[k])
        ]
        if bad:
            raise ValueError(f"Calibration: ill-typed key(s) {bad}")
        if len({len(data[k]) for k in _LISTS}) != 1:
            raise ValueError(f"Calibration: {list(_LISTS)} differ in length")
        out = {k: data[k] for k in _SCALARS if k in data} | {k: list(data[k]) for k in _LISTS}
        out["val_logits"] = [float(v) for v in out["val_logits"]]
        return cls(**out)

    def probability(self, logits: _L) -> _L:
        """Calibrated fake probability ``sigmoid(logits / temperature)``; same type back."""
        z = apply_temperature(logits, self.temperature)
        if isinstance(z, torch.Tensor):
            return torch.sigmoid(z)
        if isinstance(z, np.ndarray):
            return 0.5 * (1.0 + np.tanh(0.5 * z))  # the sigmoid, without overflow
        return 0.5 * (1.0 + math.tanh(0.5 * float(z)))

    def rethreshold(self, rule: str = "eer", target_fpr: float = 0.05) -> Calibration:
        """A copy with the threshold chosen again on the stored (calibrated) validation scores."""
        probs = self.probability(torch.tensor(self.val_logits, dtype=torch.float64))
        th = choose_threshold(probs, torch.tensor(self.val_labels), rule, target_fpr)
        fields = self.to_dict() | {"threshold": th, "rule": rule}
        return Calibration(**fields | {"target_fpr": target_fpr if rule == "fpr" else None})


def calibrate(
    logits: torch.Tensor,
    labels: torch.Tensor,
    keys: list[str],
    rule: str = "eer",
    target_fpr: float = 0.05,
    n_bins: int = 10,
) -> Calibration:
    """Fit the temperature, measure ECE before and after, choose the threshold (calibrated).

    Args:
        logits: ``(N,)`` raw video logits (see :func:`video_logits`).
        labels: ``(N,)`` 0/1 labels, 1 = fake.
        keys: ``N`` video ids, in the same order.

    Raises:
        ValueError: as :func:`fit_temperature` and :func:`choose_threshold`, or ``len(keys) != N``.
    """
    if len(keys) != logits.numel():
        raise ValueError(f"calibrate: {len(keys)} keys for {logits.numel()} logits")
    temperature = fit_temperature(logits, labels)
    z = logits.detach().to(torch.float64).cpu()
    y = labels.detach().long().cpu()
    before, after = torch.sigmoid(z), torch.sigmoid(z / temperature)
    return Calibration(
        temperature=temperature,
        threshold=choose_threshold(after, y, rule, target_fpr),
        rule=rule,
        target_fpr=target_fpr if rule == "fpr" else None,
        ece_before=expected_calibration_error(before, y, n_bins),
        ece_after=expected_calibration_error(after, y, n_bins),
        n_videos=len(keys),
        n_fake=int(y.sum()),
        val_keys=[str(k) for k in keys],
        val_logits=z.tolist(),
        val_labels=y.tolist(),
    )


def _bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-bin fraction of fakes, mean probability and count, binned as torchmetrics does."""
    edges = torch.linspace(0, 1, n_bins + 1, dtype=probs.dtype)
    idx = (torch.bucketize(probs, edges, right=True) - 1).clamp(max=n_bins - 1)  # 1.0 -> last bar
    count = torch.bincount(idx, minlength=n_bins).double()
    frac = torch.bincount(idx, labels.double(), minlength=n_bins) / count.clamp(min=1)
    conf = torch.bincount(idx, probs.double(), minlength=n_bins) / count.clamp(min=1)
    return frac.numpy(), conf.numpy(), count.numpy()


def reliability_diagram(
    probs_before: Any,
    labels: Any,
    probs_after: Any,
    path: str | Path,
    n_bins: int = 10,
    title: str = "Reliability",
) -> Path:
    """Write a PNG reliability diagram of the fake probability, before and after calibration.

    Top panels: fraction of fakes per equal-width bin (bars) and the bins' mean probability
    (dots) against the diagonal, with the ECE of :func:`expected_calibration_error` in the
    legend; the same binning on the positive-class probability (an exact 1.0, which torchmetrics
    bins on its own, is drawn in the last bar). Bottom panels: the number of videos per bin.

    Args:
        probs_before, probs_after: ``(N,)`` fake probabilities (tensor, array or list).
        labels: ``(N,)`` 0/1 labels, 1 = fake.
        path: the PNG to write (parent folders are created).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = torch.as_tensor(np.asarray(labels)).long().flatten()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), dpi=120, sharex=True,
                             gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    centers, width = (np.arange(n_bins) + 0.5) / n_bins, 1.0 / n_bins
    for col, (name, p) in enumerate((("before", probs_before), ("after", probs_after))):
        probs = torch.as_tensor(np.asarray(p, dtype=np.float64)).flatten()
        frac, conf, count = _bins(probs, y, n_bins)
        ece = expected_calibration_error(probs, y, n_bins)
        top, bottom = axes[0, col], axes[1, col]
        label = f"fraction fake (ECE {ece:.3f})"
        top.bar(centers, frac, width=width, edgecolor="black", alpha=0.7, label=label)
        used = count > 0
        top.plot(conf[used], frac[used], "o", color="tab:red", label="bin at its mean probability")
        top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        top.set(xlim=(0, 1), ylim=(0, 1), title=f"{title}: {name}", ylabel="fraction of fakes")
        top.legend(loc="upper left", fontsize=8)
        bottom.bar(centers, count, width=width, color="tab:gray", edgecolor="black")
        bottom.set(xlabel="predicted fake probability", ylabel="videos")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
