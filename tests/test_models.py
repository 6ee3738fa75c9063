import pytest
import torch

from dflab.models import create_model


def test_meso4_matches_paper_parameter_count():
    net = create_model("meso4", img_size=256)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 27_977


@pytest.mark.parametrize("name", ["meso4", "resnet10t", "efficientnet_b0"])
def test_models_score_frames(name):
    net = create_model(name, img_size=64).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 3, 64, 64))
    assert out.shape == (3,)
    assert torch.isfinite(out).all()


def test_timm_weights_load_from_local_file(tmp_path):
    import timm

    donor = timm.create_model("resnet10t", num_classes=0)
    torch.save(donor.state_dict(), tmp_path / "w.pth")
    net = create_model("resnet10t", img_size=64, pretrained_file=str(tmp_path / "w.pth"))
    assert torch.equal(net.backbone.conv1[0].weight, donor.conv1[0].weight)


def test_unknown_model_and_missing_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nosuchnet'"):
        create_model("nosuchnet")
    with pytest.raises(FileNotFoundError, match=r"model\.pretrained_file"):
        create_model("resnet10t", pretrained_file=str(tmp_path / "missing.pth"))
