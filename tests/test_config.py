from pathlib import Path

import pytest

from dflab.config import ConfigError, flatten, save_config, to_dict
from dflab.experiment import build_experiment, load_experiment

EXPERIMENTS = sorted(Path("experiments").glob("*.yaml"))


def test_overrides_are_typed():
    cfg = build_experiment({}, ["trainer.max_epochs=3", "optim.lr=1e-3", "model.backbone=efficientnet_b0",
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
        build_experiment({}, [override])
    assert message in str(err.value)


def test_unknown_key_in_yaml_names_file_and_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  image_sise: 64\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: unknown config key 'data.image_sise'.*image_size"):
        load_experiment(path)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_file_loads_and_round_trips(path, tmp_path):
    cfg = load_experiment(path)
    again = load_experiment(save_config(cfg, tmp_path / "resolved.yaml"))
    assert to_dict(again) == to_dict(cfg)
    assert not any(str(v).startswith("/") for v in flatten(to_dict(cfg)).values()), "absolute path in config"


def test_flatten_keys_are_stable():
    a = flatten(to_dict(build_experiment({}, ["optim.lr=0.1"])))
    b = flatten(to_dict(build_experiment({}, ["model.backbone=resnet18"])))
    assert a.keys() == b.keys()
    assert "trainer.max_epochs" in a


def test_face_frame_step_must_not_be_negative():
    assert build_experiment({}, ["faces.frame_step=3"]).faces.frame_step == 3
    with pytest.raises(ConfigError, match=r"faces\.frame_step"):
        build_experiment({}, ["faces.frame_step=-2"])


def test_an_experiment_extends_a_base_file(tmp_path):
    from dflab.experiment import load_experiment

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.yaml").write_text(
        "name: common\ndata:\n  source: demo\n  batch_size: 16\n  val_fraction: 0.25\n"
        "model:\n  backbone: meso4\n  drop_rate: 0.3\noptim:\n  lr: 1.0e-3\n")
    (tmp_path / "middle.yaml").write_text("extends: base/common.yaml\nname: middle\nmodel:\n  drop_rate: 0.1\n")
    (tmp_path / "child.yaml").write_text("extends: middle.yaml\nname: child\ndata:\n  batch_size: 8\n")
    cfg = load_experiment(tmp_path / "child.yaml", ["optim.lr=0.01"])
    assert (cfg.name, cfg.data.batch_size, cfg.data.val_fraction) == ("child", 8, 0.25)  # deep-merged
    assert (cfg.model.backbone, cfg.model.drop_rate, cfg.optim.lr) == ("meso4", 0.1, 0.01)


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "extends itself"),
    ({"a.yaml": "extends: missing.yaml\n"}, "extends: .*missing.yaml does not exist"),
    ({"a.yaml": "extends: [b.yaml]\n"}, "extends: expected the path of a base experiment file"),
    ({"a.yaml": "extends: b.yaml\nmodel:\n  backbone_name: x\n", "b.yaml": "name: b\n"}, "unknown config key 'model.backbone_name'"),
])
def test_extends_errors_name_the_file(tmp_path, files, message):
    from dflab.config import ConfigError
    from dflab.experiment import load_experiment

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_experiment(tmp_path / "a.yaml")
    assert "a.yaml" in str(err.value)


def test_the_shipped_experiments_extend_their_base():
    texts = {p.name: p.read_text() for p in EXPERIMENTS if "ffpp-c23" in p.name}
    assert texts and all("extends: base/ffpp-c23.yaml" in t for t in texts.values())
    assert max(len(t.splitlines()) for t in texts.values()) <= 15  # a few lines each


def test_dataset_commands_load_experiments_without_the_model_stack():
    """``dflab data check`` and ``dflab faces`` never build a network: their config load checks the
    dataset and detector but not the backbone, so neither timm nor torch is imported."""
    import subprocess
    import sys

    code = ("import sys; from dflab.experiment import load_experiment; "
            "cfg = load_experiment('experiments/mesonet4_demo.yaml', ['model.backbone=nope'], model=False); "
            "print(cfg.data.source, 'timm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["demo", "False", "False"]
    from dflab.experiment import load_experiment

    with pytest.raises(ConfigError, match=r"model\.backbone: unknown model 'nope'"):
        load_experiment("experiments/mesonet4_demo.yaml", ["model.backbone=nope"])
    with pytest.raises(ConfigError, match=r"data\.source"):
        load_experiment("experiments/mesonet4_demo.yaml", ["data.source=nope"], model=False)


def test_mlflow_tracking_uri_is_used_when_the_config_sets_none(monkeypatch):
    from dflab.experiment import build_experiment

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert build_experiment({}).logging.tracking_uri == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.lab:5000")
    assert build_experiment({}).logging.tracking_uri == "http://mlflow.lab:5000"
    explicit = build_experiment({"logging": {"tracking_uri": "sqlite:///elsewhere.db"}})
    assert explicit.logging.tracking_uri == "sqlite:///elsewhere.db"  # the config wins


def test_trainer_devices_take_every_form_lightning_does():
    from dflab.experiment import build_experiment

    forms = {"2": 2, "auto": "auto", "-1": -1, "[0,1]": [0, 1], "0,1": [0, 1]}
    for text, expected in forms.items():
        assert build_experiment({}, [f"trainer.devices={text}"]).trainer.devices == expected
    assert build_experiment({"trainer": {"devices": [0, 2], "num_nodes": 4}}).trainer.num_nodes == 4
    for bad in ("0", "[]", "gpu", "[0,0]", "-2"):
        with pytest.raises(ConfigError, match=r"trainer\.devices"):
            build_experiment({}, [f"trainer.devices={bad}"])
    with pytest.raises(ConfigError, match=r"trainer\.num_nodes: must be > 0"):
        build_experiment({}, ["trainer.num_nodes=0"])
