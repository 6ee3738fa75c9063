import math

import torch

from dflab.training.metrics import DetectionMetrics, equal_error_rate


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
