import math

import pytest
import torch

from dflab.metrics.scores import DetectionMetrics, equal_error_rate


def test_video_scores_are_means_of_clip_scores_and_padding_is_dropped():
    m = DetectionMetrics()
    logits = torch.tensor([2.0, -1.0, 3.0, 1.0, -2.0, -3.0])
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    videos = torch.tensor([0, 0, 1, 2, 2, 3])
    m.update(logits, labels, videos, torch.arange(6))
    m.update(logits[:2], labels[:2], videos[:2], torch.arange(2))  # sampler padding: same clip ids
    vids, probs, _vlabels = m.video_predictions()
    assert vids.tolist() == [0, 1, 2, 3]
    expected0 = (torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(-1.0))) / 2
    assert math.isclose(probs[0].item(), expected0.item(), rel_tol=1e-6)
    out = m.compute()
    assert out["video_auroc"].item() == 1.0
    assert math.isclose(out["frame_auroc"].item(), 8 / 9, rel_tol=1e-6)


def test_eer_of_perfect_and_inverted_scores():
    labels = torch.tensor([0, 0, 1, 1])
    assert equal_error_rate(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels).item() == 0.0
    assert equal_error_rate(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels).item() == 1.0


def test_single_class_gives_nan_rank_metrics_not_a_guess():
    m = DetectionMetrics()
    m.update(torch.zeros(3), torch.ones(3), torch.arange(3), torch.arange(3))
    out = m.compute()
    assert math.isnan(out["frame_auroc"].item())
    assert out["frame_acc"].item() == 0.0


def test_roc_area_equals_the_auroc_whatever_the_order_of_tied_scores():
    """A hand-made ROC that sorts scores and steps through ties one by one draws an area that
    depends on the input order; the plotted curve must enclose exactly the reported AUROC."""
    import numpy as np
    from torchmetrics.functional.classification import binary_auroc

    from dflab.metrics.reports import roc_curve, roc_figure

    probs = np.array([0.5, 0.5, 0.5, 0.9, 0.1, 0.5])
    labels = np.array([0, 1, 1, 1, 0, 0])
    truth = float(binary_auroc(torch.tensor(probs), torch.tensor(labels)))
    assert math.isclose(truth, 7 / 9, rel_tol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(10):
        order = rng.permutation(len(probs))
        fpr, tpr, auc = roc_curve(probs[order], labels[order])
        assert math.isclose(float(np.trapezoid(tpr, fpr)), truth, rel_tol=1e-6) and auc == truth
    fig = roc_figure({"val (video)": (probs, labels)}, "run: resnet10t, 96 px")
    ax = fig.axes[0]
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert math.isclose(float(np.trapezoid(y, x)), truth, rel_tol=1e-6)
    assert "AUROC 0.778" in ax.get_legend().get_texts()[0].get_text()
    assert ax.get_title() == "run: resnet10t, 96 px"


def test_eer_is_torchmetrics_binary_eer_with_ties():
    from torchmetrics.functional.classification import binary_eer

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        probs = torch.randint(0, 5, (40,), generator=g).float() / 4  # many ties
        labels = torch.randint(0, 2, (40,), generator=g)
        if labels.min() == labels.max():
            continue
        assert equal_error_rate(probs, labels).item() == binary_eer(probs, labels).item()


def test_plot_titles_name_the_model_and_the_objective(tmp_path):
    import optuna

    from dflab.experiment import build_experiment
    from dflab.metrics.reports import model_description
    from dflab.sweeps.summary import parallel_coordinates_figure

    cfg = build_experiment({}, ["model.backbone=resnet10t", "model.temporal=lstm", "data.frames_per_clip=8"])
    assert model_description(cfg.model, cfg.data, cfg.triplet) == "resnet10t + lstm, 8x96 px"
    study = optuna.create_study(study_name="demo", direction="maximize")
    study.optimize(lambda t: t.suggest_float("optim.lr", 1e-4, 1e-2, log=True), n_trials=3)
    fig = parallel_coordinates_figure(study, "val/video_auroc")
    ax = fig.axes[0]
    assert "val/video_auroc" in ax.get_title() and "maximize" in ax.get_title()
    labels = [t.get_text() for a in fig.axes for t in a.get_yticklabels()] + [a.get_ylabel() for a in fig.axes]
    assert any("val/video_auroc" in text for text in labels)


def test_predictions_are_keyed_by_video_and_checked_against_it():
    from dflab.datasets.sources import VideoItem
    from dflab.metrics.predictions import as_arrays, keyed_predictions

    items = [VideoItem("/d/real/a.mp4", 0, dataset="ffpp", key="real/a.mp4"),
             VideoItem("/d/fake/a.mp4", 1, dataset="ffpp", key="fake/a.mp4"),
             VideoItem("/e/a.mp4", 0, dataset="celebdf", key="a.mp4")]
    preds = keyed_predictions(items, torch.tensor([2, 0, 1]), torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0, 0, 1]))
    assert list(preds) == ["celebdf/a.mp4", "ffpp/real/a.mp4", "ffpp/fake/a.mp4"]
    assert preds["ffpp/fake/a.mp4"].item is items[1] and preds["ffpp/fake/a.mp4"].probability == pytest.approx(0.9)
    probs, labels = as_arrays(preds)
    assert labels.tolist() == [0, 0, 1] and probs.shape == (3,)
    with pytest.raises(ValueError, match=r"/d/real/a\.mp4 is labelled 0 but its score came with label 1"):
        keyed_predictions(items, torch.tensor([0, 1]), torch.tensor([0.1, 0.2]), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="outside the split's 3 videos"):
        keyed_predictions(items, torch.tensor([3]), torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(ValueError, match="scored twice"):
        keyed_predictions(items, torch.tensor([0, 0]), torch.tensor([0.1, 0.2]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="one per video"):
        keyed_predictions(items, torch.tensor([0, 1]), torch.tensor([0.1]), torch.tensor([0, 1]))
