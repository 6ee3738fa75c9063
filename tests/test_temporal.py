"""Temporal detectors over N-frame windows: LSTM, GRU and transformer heads on frame embeddings."""

from __future__ import annotations

import pytest
import torch

from dflab.models import create_model
from dflab.models.temporal import TemporalClassifier


@pytest.mark.parametrize("backbone", ["meso4", "meso_inception4", "resnet10t", "efficientnet_b0",
                                      "vit_tiny_patch16_224"])
def test_embeddings_have_the_advertised_size(backbone):
    net = create_model(backbone, img_size=64).eval()
    with torch.no_grad():
        assert net.embed(torch.rand(2, 3, 64, 64)).shape == (2, net.embed_dim)


@pytest.mark.parametrize("head", ["lstm", "gru", "transformer"])
@pytest.mark.parametrize("backbone", ["meso4", "resnet10t"])
def test_windows_score_deterministically_and_in_order(head, backbone):
    torch.manual_seed(0)
    net = create_model(backbone, img_size=64, temporal=head, temporal_hidden=32, drop_rate=0.3)
    assert isinstance(net, TemporalClassifier) and net.takes_clips
    net.eval()
    clips = torch.rand(3, 5, 3, 64, 64)
    with torch.no_grad():
        first, second = net(clips), net(clips)
        reversed_order = net(clips.flip(1))
    assert first.shape == (3,) and torch.isfinite(first).all()
    assert torch.equal(first, second)  # no random initial state, no dropout in eval
    assert not torch.allclose(first, reversed_order)  # the frame order matters


def test_transformer_refuses_windows_beyond_its_positions():
    net = create_model("meso4", img_size=32, temporal="transformer", temporal_hidden=32).eval()
    with pytest.raises(ValueError, match="max_frames"):
        net(torch.rand(1, 70, 3, 32, 32))


@pytest.mark.parametrize("head", ["lstm", "gru", "transformer"])
def test_temporal_models_learn_a_motion_cue(head, training_losses):
    """Real windows are still, fake windows flicker frame to frame: only time tells them apart
    (every single frame comes from the same distribution), and the training loss falls."""
    torch.manual_seed(0)
    base = torch.rand(16, 1, 3, 32, 32).expand(-1, 6, -1, -1, -1)
    flicker = torch.tensor([0.0, 0.25] * 3).view(1, 6, 1, 1, 1)
    still = torch.full((1, 6, 1, 1, 1), 0.125)
    clips = torch.cat([(base[:8] * 0.7 + still), (base[8:] * 0.7 + flicker)]).clamp(0, 1)
    labels = torch.tensor([0.0] * 8 + [1.0] * 8)
    net = create_model("meso4", img_size=32, temporal=head, temporal_hidden=32)
    losses = training_losses(
        net.parameters(), lambda: torch.nn.functional.binary_cross_entropy_with_logits(net(clips), labels), 60)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


@pytest.mark.parametrize("head", ["lstm", "transformer"])
def test_temporal_models_export_with_parity(head, tmp_path):
    import onnxruntime as ort

    from dflab.export.export import export_model

    torch.manual_seed(0)
    net = create_model("meso4", img_size=32, temporal=head, temporal_hidden=32).eval()
    clips = torch.rand(5, 4, 3, 32, 32)
    result = export_model(net, clips, tmp_path, atol=1e-4)
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "clips"
    assert result.onnx_max_abs_diff <= 1e-4 and result.pt2_max_abs_diff <= 1e-4
