from pathlib import Path

import pytest

from dflab.config import ConfigError, build_config, flatten, load_config, save_config, to_dict

EXPERIMENTS = sorted(Path("experiments").glob("*.yaml"))


def test_overrides_are_typed():
    cfg = build_config({}, ["trainer.max_epochs=3", "optim.lr=1e-3", "model.backbone=efficientnet_b0",
                            "model.pretrained_file=null", "trainer.gradient_clip_val=0.5"])
    assert cfg.trainer.max_epochs == 3
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.model.backbone == "efficientnet_b0"
    assert cfg.model.pretrained_file is None
    assert cfg.trainer.gradient_clip_val == 0.5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch' (did you mean 'trainer.max_epochs'?)"),
        ("trainer.max_epochs=three", "trainer.max_epochs: expected int, got str 'three'"),
        ("trainer.deterministic=maybe", "trainer.deterministic: expected bool"),
        ("data.augment=heavy", "data.augment: 'heavy' is not one of"),
        ("optim.lr=-1", "optim.lr: must be > 0"),
        ("nosuch=1", "unknown config key 'nosuch'"),
        ("trainer=1", "names a whole section"),
        ("trainer.max_epochs", "is not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        build_config({}, [override])
    assert message in str(err.value)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  image_sise: 64\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: unknown config key 'data.image_sise'.*image_size"):
        load_config(path)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_file_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    again = load_config(save_config(cfg, tmp_path / "resolved.yaml"))
    assert to_dict(again) == to_dict(cfg)
    assert not any(str(v).startswith("/") for v in flatten(to_dict(cfg)).values()), "absolute path in config"


def test_flatten_keys_are_stable():
    a = flatten(to_dict(build_config({}, ["optim.lr=0.1"])))
    b = flatten(to_dict(build_config({}, ["model.backbone=resnet18"])))
    assert a.keys() == b.keys()
    assert "trainer.max_epochs" in a


def test_face_frame_step_must_not_be_negative():
    assert build_config({}, ["faces.frame_step=3"]).faces.frame_step == 3
    with pytest.raises(ConfigError, match=r"faces\.frame_step"):
        build_config({}, ["faces.frame_step=-2"])
