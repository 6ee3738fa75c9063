"""Triplet-loss siamese detectors: the loss and its mining, learning, and the two linked stages."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from dflab.config import ConfigError
from dflab.experiment import build_experiment
from dflab.models import create_model
from dflab.models.embedding import EmbeddingClassifier
from dflab.training.triplet import triplet_loss

LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("mining", ["batch_hard", "batch_all", "random"])
def test_loss_is_zero_for_separated_classes_and_positive_when_mixed(mining):
    apart = torch.tensor([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 3)
    assert float(triplet_loss(apart, LABELS, 0.5, mining)) == 0.0
    mixed = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    mixed.requires_grad_(True)
    loss = triplet_loss(mixed, LABELS, 0.5, mining, torch.Generator().manual_seed(1))
    assert loss.item() > 0
    loss.backward()
    assert mixed.grad is not None and mixed.grad.abs().sum() > 0


def test_batch_hard_picks_the_farthest_positive_and_nearest_negative():
    e = torch.tensor([[0.0], [1.0], [3.0], [1.5]])
    y = torch.tensor([0, 0, 0, 1])
    # anchor 0: farthest positive 3.0, nearest negative 1.5 -> 3 - 1.5 + 0.1; anchor 3 has no positive
    expected = ((3 - 1.5 + 0.1) + (2 - 0.5 + 0.1) + (3 - 1.5 + 0.1)) / 3
    assert float(triplet_loss(e, y, 0.1, "batch_hard")) == pytest.approx(expected)


def test_one_class_batch_has_no_triplet():
    e = torch.randn(4, 3, requires_grad=True)
    loss = triplet_loss(e, torch.zeros(4, dtype=torch.long), 0.3)
    assert float(loss) == 0.0 and loss.requires_grad


def test_embedding_learns_to_separate_the_classes(training_losses):
    """Two classes of random images that differ by a colour cast: the triplet loss falls."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32) * 0.6
    x[8:, 0] += 0.4
    y = torch.tensor([0] * 8 + [1] * 8)
    net = create_model("meso4", img_size=32, embed_dim=16)
    assert isinstance(net, EmbeddingClassifier)
    losses = training_losses(net.parameters(), lambda: triplet_loss(net.embed(x), y, 0.5), 40)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert torch.allclose(net.embed(x).norm(dim=1), torch.ones(16), atol=1e-5)


@pytest.mark.slow
def test_two_stages_are_linked_runs_and_the_embedding_stays_frozen(fast_overrides):
    from dflab.models.checkpoint import load_checkpoint
    from dflab.training.train import run_experiment

    cfg = build_experiment({"name": "siamese"}, [*fast_overrides, "triplet.enabled=true", "triplet.embed_epochs=1",
                                             "triplet.embed_dim=16", "model.backbone=resnet10t"])
    result = run_experiment(cfg, progress=False)
    client = MlflowClient(cfg.logging.tracking_uri)
    head_run = client.get_run(result.run_id)
    embed_id = head_run.data.tags["dflab.embedding_run"]
    embed_run = client.get_run(embed_id)
    assert embed_run.data.tags["dflab.classifier_run"] == result.run_id
    assert embed_run.data.tags["dflab.stage"] == "embed" and head_run.data.tags["dflab.stage"] == "classify"
    assert embed_run.info.run_name == "siamese-embed" and "val/loss" in embed_run.data.metrics
    assert "test/video_auroc" in head_run.data.metrics
    # the classifier stage trained only the head on the stage-1 embedding
    embed_ckpt = next(p for p in client.list_artifacts(embed_id, "checkpoints"))
    local = client.download_artifacts(embed_id, embed_ckpt.path)
    _, first = load_checkpoint(local)
    _, second = load_checkpoint(result.best_checkpoint)
    assert torch.equal(first.project.weight, second.project.weight)
    assert not torch.equal(first.head.weight, second.head.weight)


def test_triplet_options_are_checked(fast_overrides):
    with pytest.raises(ConfigError, match=r"triplet\.mining"):
        build_experiment({}, [*fast_overrides, "triplet.mining=hardest"])
    with pytest.raises(ConfigError, match=r"model\.temporal: none"):
        build_experiment({}, [*fast_overrides, "triplet.enabled=true", "model.temporal=lstm"])
