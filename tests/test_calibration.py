import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve
from torchmetrics.classification import BinaryCalibrationError

from dflab.metrics.calibration import (
    Calibration,
    apply_temperature,
    calibrate,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
    video_logits,
)


def _data(n=20000, seed=0):
    """True logits z ~ N(0, 3) and labels drawn from sigmoid(z)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64) * 3.0
    y = torch.bernoulli(torch.sigmoid(z), generator=g).long()
    return z, y


def _fpr(probs, labels, th):
    probs, labels = np.asarray(probs), np.asarray(labels)
    return float(np.mean(probs[labels == 0] >= th))


def _fnr(probs, labels, th):
    probs, labels = np.asarray(probs), np.asarray(labels)
    return float(np.mean(probs[labels == 1] < th))


def test_fit_temperature_recovers_over_and_under_confidence():
    z, y = _data()
    assert fit_temperature(z * 3, y) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(z / 2, y) == pytest.approx(0.5, rel=0.1)
    assert fit_temperature(z * 3, y) == fit_temperature(z * 3, y)  # deterministic


def test_fit_temperature_agrees_with_scipy():
    z, y = _data(n=5000, seed=1)
    logits, yn = (z * 2).numpy(), y.numpy().astype(np.float64)

    def nll(log_t):
        s = logits / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - yn * s))

    ref = math.exp(minimize_scalar(nll, bracket=(-1.0, 1.0), tol=1e-10).x)
    assert fit_temperature(z * 2, y) == pytest.approx(ref, rel=1e-3)


def test_apply_temperature_and_video_logits():
    assert apply_temperature(3.0, 2.0) == 1.5
    np.testing.assert_allclose(apply_temperature(np.array([2.0, -4.0]), 2.0), [1.0, -2.0])
    assert torch.equal(apply_temperature(torch.tensor([2.0]), 2.0), torch.tensor([1.0]))
    lg = video_logits(torch.tensor([0.0, 0.5, 1.0]))
    assert lg.dtype == torch.float64 and lg[1] == 0 and torch.isfinite(lg).all()
    assert lg[2].item() == pytest.approx(math.log((1 - 1e-6) / 1e-6))


def test_ece_matches_torchmetrics_and_calibration_lowers_it():
    z, y = _data(n=4000, seed=2)
    probs = torch.sigmoid(z * 3).float()
    ref = BinaryCalibrationError(n_bins=10, norm="l1")(probs, y)
    assert expected_calibration_error(probs, y) == pytest.approx(ref.item(), abs=1e-6)
    cal = calibrate(z * 3, y, [f"v{i}" for i in range(len(y))])
    assert cal.temperature > 2 and cal.ece_after < cal.ece_before
    assert cal.n_videos == len(y) and cal.n_fake == int(y.sum()) and cal.rule == "eer"


def test_eer_threshold_matches_sklearn_eer_point():
    probs = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.6, 0.62, 0.7, 0.8, 0.9])
    labels = torch.tensor([0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1])
    fpr, tpr, _ = roc_curve(labels.numpy(), probs.numpy(), drop_intermediate=False)
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    th = choose_threshold(probs, labels, "eer")
    assert _fpr(probs, labels, th) == pytest.approx(fpr[i])
    assert _fnr(probs, labels, th) == pytest.approx(1 - tpr[i])


@pytest.mark.parametrize("target", [0.05, 0.2, 0.5])
def test_fpr_threshold_is_the_lowest_within_budget(target):
    z, y = _data(n=500, seed=3)
    probs = torch.sigmoid(z).float()
    th = choose_threshold(probs, y, "fpr", target_fpr=target)
    assert 0.0 <= th <= 1.0
    assert _fpr(probs, y, th) <= target
    lower = probs[probs < th].max().item()  # next lower distinct score
    assert _fpr(probs, y, lower) > target


def test_fpr_threshold_above_a_negative_top_score():
    probs = torch.tensor([0.9, 0.8, 0.3, 0.1])
    labels = torch.tensor([0, 1, 1, 0])
    th = choose_threshold(probs, labels, "fpr", target_fpr=0.1)
    assert 0.9 < th <= 1.0 and _fpr(probs, labels, th) == 0.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.tensor([0.2, 0.7]), torch.tensor([1, 1])), {}, "one class"),
        ((torch.tensor([]), torch.tensor([], dtype=torch.long)), {}, "empty"),
        (
            (torch.tensor([0.2, 0.7]), torch.tensor([0, 1])),
            {"rule": "youden"},
            "unknown threshold rule",
        ),
        (
            (torch.tensor([0.2, 0.7]), torch.tensor([0, 1])),
            {"rule": "fpr", "target_fpr": 0.0},
            "target_fpr",
        ),
        (
            (torch.tensor([0.2, 0.7]), torch.tensor([0, 1])),
            {"rule": "fpr", "target_fpr": 1.0},
            "target_fpr",
        ),
    ],
)
def test_choose_threshold_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold(*args, **kwargs)


def test_fit_temperature_errors():
    with pytest.raises(ValueError, match="one class"):
        fit_temperature(torch.tensor([1.0, 2.0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="at least 2"):
        fit_temperature(torch.tensor([1.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(torch.tensor([1.0, math.nan]), torch.tensor([0, 1]))


def _calibration():
    z, y = _data(n=400, seed=4)
    return calibrate(z * 2, y, [f"video_{i}" for i in range(len(y))])


def test_calibration_round_trips_through_checkpoint_and_json(tmp_path):
    cal = _calibration()
    data = cal.to_dict()
    assert Calibration.from_dict(data) == cal
    torch.save({"calibration": data}, tmp_path / "c.pt")
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)["calibration"]
    assert Calibration.from_dict(loaded) == cal
    assert Calibration.from_dict(json.loads(json.dumps(data))) == cal
    del data["temperature"]
    with pytest.raises(ValueError, match="temperature"):
        Calibration.from_dict(data)
    with pytest.raises(ValueError, match="threshold"):
        Calibration.from_dict(cal.to_dict() | {"threshold": "high"})


def test_probability_keeps_the_input_type():
    cal = _calibration()
    p = cal.probability(1.0)
    assert isinstance(p, float) and p == pytest.approx(1 / (1 + math.exp(-1 / cal.temperature)))
    arr = cal.probability(np.array([1.0, -1000.0]))
    assert isinstance(arr, np.ndarray) and arr[0] == pytest.approx(p) and arr[1] == 0.0
    ten = cal.probability(torch.tensor([1.0]))
    assert isinstance(ten, torch.Tensor) and ten.item() == pytest.approx(p, rel=1e-6)


def test_rethreshold_to_an_fpr_budget():
    cal = _calibration()
    re = cal.rethreshold("fpr", target_fpr=0.1)
    assert re.rule == "fpr" and re.target_fpr == 0.1 and re.temperature == cal.temperature
    probs = cal.probability(np.array(cal.val_logits))
    assert _fpr(probs, cal.val_labels, re.threshold) <= 0.1
    assert cal.rule == "eer" and cal.target_fpr is None  # the original is unchanged


def test_reliability_diagram_writes_a_png(tmp_path):
    z, y = _data(n=1000, seed=5)
    out = reliability_diagram(
        torch.sigmoid(z * 3), y, torch.sigmoid(z), tmp_path / "sub" / "rel.png"
    )
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300
