"""Frozen-backbone warm-up epochs and early stopping, in real (short) training runs."""

from __future__ import annotations

import pytest
import torch

from dflab.config import ConfigError
from dflab.experiment import build_experiment
from dflab.models import create_model
from dflab.training.freeze import backbone_and_head


@pytest.mark.parametrize(("name", "temporal"), [("meso4", "none"), ("resnet10t", "none"),
                                                ("meso4", "gru")])
def test_head_is_told_apart_from_the_backbone(name, temporal):
    net = create_model(name, img_size=32, temporal=temporal)
    backbone, heads = backbone_and_head(net)
    frozen = {id(p) for p in backbone.parameters()} - {id(p) for h in heads for p in h.parameters()}
    trainable = [p for p in net.parameters() if id(p) not in frozen]
    assert frozen and trainable
    assert sum(p.numel() for p in trainable) < sum(p.numel() for p in net.parameters())


def test_backbone_stays_frozen_for_the_warm_up_epochs(fast_overrides):
    import pytorch_lightning as pl

    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.training.freeze import BackboneFreeze
    from dflab.training.train import build_module

    cfg = build_experiment({}, [*fast_overrides, "optim.freeze_backbone_epochs=1", "trainer.max_epochs=2"])
    module = build_module(cfg)
    backbone, heads = backbone_and_head(module.net)
    head_ids = {id(p) for h in heads for p in h.parameters()}
    conv = next(p for p in backbone.parameters() if id(p) not in head_ids)
    bn = next(m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    head = next(iter(heads[0].parameters()))
    start = (conv.detach().clone(), bn.running_mean.clone(), head.detach().clone())

    def fit(epochs: int) -> None:
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False,
                             callbacks=[BackboneFreeze(1)], num_sanity_val_steps=0)
        trainer.fit(module, datamodule=DeepfakeDataModule(cfg.data, cfg.faces, progress=False))

    fit(1)
    assert torch.equal(conv, start[0]) and torch.equal(bn.running_mean, start[1])
    assert not torch.equal(head, start[2])  # the head trained
    fit(2)  # a new trainer from epoch 0 would freeze again: run two epochs, the second unfrozen
    assert not torch.equal(conv, start[0])


def test_early_stopping_and_negative_values(fast_overrides):
    from dflab.training.callbacks import extra_callbacks

    cfg = build_experiment({}, [*fast_overrides, "trainer.early_stopping_patience=2", "optim.freeze_backbone_epochs=1"])
    names = [type(c).__name__ for c in extra_callbacks(cfg)]
    assert names == ["EarlyStopping", "BackboneFreeze"]
    assert extra_callbacks(build_experiment({}, fast_overrides)) == []
    with pytest.raises(ConfigError, match=r"optim\.freeze_backbone_epochs: must be >= 0"):
        build_experiment({}, [*fast_overrides, "optim.freeze_backbone_epochs=-1"])


def test_gradient_accumulation_and_warm_up(fast_overrides):
    import pytorch_lightning as pl

    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.training.train import build_module

    cfg = build_experiment({}, [*fast_overrides, "trainer.accumulate_grad_batches=2", "optim.warmup_epochs=1",
                            "trainer.max_epochs=2"])
    module = build_module(cfg)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    batches = len(dm.train_dataloader())
    assert trainer.global_step == -(-batches // 2)  # one optimizer step per two batches
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == cfg.optim.lr
    # a 1-epoch warm-up runs epoch 0 at half the peak learning rate, then the cosine starts at 1
    factor = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert factor(0) == pytest.approx(0.5) and factor(1) == pytest.approx(1.0)
