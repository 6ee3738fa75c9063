import pytest
import torch

from dflab.models import create_model


@pytest.mark.parametrize(("name", "params"), [("meso4", 27_977), ("meso_inception4", 28_615)])
def test_mesonets_match_the_paper_parameter_counts(name, params):
    """Afchar et al. (2018), section 3: 27,977 and 28,615 trainable parameters at 256x256."""
    net = create_model(name, img_size=256)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == params
    assert net(torch.rand(2, 3, 256, 256)).shape == (2,)


@pytest.mark.parametrize("name", ["meso4", "meso_inception4", "resnet10t", "efficientnet_b0"])
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


@pytest.mark.parametrize(("experiment", "size", "mean"), [
    ("effb4_ffpp-c23", 380, (0.485, 0.456, 0.406)),
    ("effv2s_ffpp-c23", 300, (0.5, 0.5, 0.5)),
    ("xception_ffpp-c23", 299, (0.5, 0.5, 0.5)),
    ("resnet50_ffpp-c23", 224, (0.485, 0.456, 0.406)),
    ("vgg16_ffpp-c23", 224, (0.485, 0.456, 0.406)),
    ("vit-b16_ffpp-c23", 224, (0.5, 0.5, 0.5)),
    ("mesoinception4_ffpp-c23", 256, (0.5, 0.5, 0.5)),
])
def test_input_size_and_normalisation_come_from_the_backbone(experiment, size, mean):
    from dflab.experiment import load_experiment

    cfg = load_experiment(f"experiments/{experiment}.yaml")
    assert cfg.data.image_size == size  # `image_size: null` in the file
    net = create_model(cfg.model.backbone, img_size=64)
    assert torch.allclose(net.mean.flatten(), torch.tensor(mean), atol=1e-3)


def test_vit_is_built_for_the_crop_size():
    net = create_model("vit_tiny_patch16_224", img_size=96).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 96, 96)).shape == (2,)


@pytest.mark.parametrize("name", ["meso4", "meso_inception4", "resnet10t"])
def test_frame_models_learn_a_separable_set(name, training_losses):
    """Two classes of random images told apart by a colour cast: the training loss falls."""
    torch.manual_seed(0)
    x = torch.rand(16, 3, 64, 64) * 0.6
    x[8:, 0] += 0.4
    y = torch.tensor([0.0] * 8 + [1.0] * 8)
    net = create_model(name, img_size=64)
    losses = training_losses(net.parameters(),
                             lambda: torch.nn.functional.binary_cross_entropy_with_logits(net(x), y), 30)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_precision_auto_is_mixed_only_on_a_gpu():
    from dflab.training.fit import resolve_precision

    expected = "16-mixed" if torch.cuda.is_available() else "32-true"
    assert resolve_precision("auto", "auto") == expected
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
