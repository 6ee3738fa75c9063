"""Same config and seed, same numbers: every augmentation preset, self-blending, loader workers.

And every run says what it trained on (an MLflow dataset input per split with a digest), so
two runs on different data are never compared unknowingly.
"""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.experiment import build_experiment
from footage import manifest_with


def _batches(overrides: list[str], epochs: int = 2) -> list[list[torch.Tensor]]:
    cfg = build_experiment({}, overrides)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, seed=cfg.seed, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    return [[torch.cat([b["clip"].flatten(), b["label"].float()]) for b in loader] for _ in range(epochs)]


@pytest.mark.parametrize("extra", [["data.augment=none"], ["data.augment=light"], ["data.augment=strong"],
                                   ["data.augment=light", "data.self_blend=0.5"]],
                         ids=["none", "light", "strong", "self-blend"])
def test_training_batches_repeat_for_the_same_seed_with_workers(fast_overrides, extra) -> None:
    overrides = [*fast_overrides, "data.num_workers=2", "data.frames_per_clip=2", *extra]
    first, second = _batches(overrides), _batches(overrides)
    for epoch_a, epoch_b in zip(first, second, strict=True):
        assert len(epoch_a) == len(epoch_b)
        assert all(torch.equal(a, b) for a, b in zip(epoch_a, epoch_b, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first[0], first[1], strict=True))  # epochs differ
    other = _batches([*overrides, "seed=7"], epochs=1)
    assert not all(torch.equal(a, b) for a, b in zip(first[0], other[0], strict=True))


@pytest.mark.slow
def test_two_runs_give_identical_metrics_and_name_the_same_data(fast_overrides) -> None:
    from mlflow.tracking import MlflowClient

    from dflab.training.train import run_experiment

    overrides = [*fast_overrides, "data.num_workers=2", "data.augment=light", "data.self_blend=0.3",
                 "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    runs = [run_experiment(build_experiment({}, overrides), progress=False) for _ in range(2)]
    # every metric of the model and the data is identical; the inference time is a clock reading
    latency = [r.metrics.pop("model/latency_ms") for r in runs]
    assert all(v > 0 for v in latency)
    assert runs[0].metrics == runs[1].metrics and runs[0].best_score == runs[1].best_score
    assert "model/params_m" in runs[0].metrics
    cfg = build_experiment({}, overrides)
    client = MlflowClient(cfg.logging.tracking_uri)
    history = [[m.value for m in client.get_metric_history(r.run_id, "train/loss_step")] for r in runs]
    assert history[0] == history[1] and len(history[0]) > 2
    inputs = [client.get_run(r.run_id).inputs.dataset_inputs for r in runs]
    names = {(d.dataset.name, d.dataset.digest, d.tags[0].value) for d in inputs[0]}
    assert {n for n, _, _ in names} == {"manifest-train", "manifest-val", "manifest-test"}
    assert {c for _, _, c in names} == {"training", "validation", "test"}
    assert names == {(d.dataset.name, d.dataset.digest, d.tags[0].value) for d in inputs[1]}
    tags = [client.get_run(r.run_id).data.tags["dflab.data_digest"] for r in runs]
    assert tags[0] == tags[1]


def test_data_digest_changes_with_the_videos_or_the_face_settings(fast_overrides, small_manifest, tmp_path) -> None:
    def digests(*extra: str) -> dict[str, str]:
        cfg = build_experiment({}, [*fast_overrides, *extra])
        dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
        dm.prepare_data()
        dm.setup("fit")
        return {d["split"]: d["digest"] for d in dm.dataset_digests()}

    base = digests()
    assert base == digests()  # stable
    assert digests("faces.margin=1.5")["train"] != base["train"]  # other crops of the same videos
    full = manifest_with(small_manifest, tmp_path / "full.csv")
    rows = full.read_text().splitlines()
    drop = next(i for i, r in enumerate(rows) if ",train," in r)
    fewer = tmp_path / "fewer.csv"
    fewer.write_text("\n".join(r for k, r in enumerate(rows) if k != drop) + "\n")
    before, after = digests(f"data.root={full}"), digests(f"data.root={fewer}")
    assert after["train"] != before["train"] and after["val"] == before["val"]
