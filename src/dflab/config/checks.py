"""Allowed choices and ranges of config values, and the rules that tie keys together.

Plain data and arithmetic only: nothing here imports a registry, torch or timm.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from dflab.config.errors import ConfigError
from dflab.config.schema import ExperimentConfig

TRACKING_SCHEMES = ("sqlite:///", "file://", "http://", "https://", "postgresql", "mysql", "mssql", "databricks")
"""Tracking URIs MLflow serves."""

CHOICES: dict[str, tuple[str, ...]] = {
    "calibration.threshold": ("eer", "fpr"),
    "trainer.precision": ("auto", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true",
                          "bf16-true", "64-true", "64", "transformer-engine"),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps", "tpu"),
    "data.augment": ("none", "light", "strong"),
    "faces.crop": ("box", "aligned"),
    "faces.track_score": ("max", "mean", "main"),
    "model.temporal": ("none", "lstm", "gru", "transformer"),
    "triplet.mining": ("batch_hard", "batch_all", "random"),
    "optim.name": ("adamw", "adam", "sgd"),
    "optim.scheduler": ("cosine", "none"),
}
POSITIVE = ("data.frames_per_clip", "data.frame_stride", "data.train_clips_per_video",
            "data.eval_clips_per_video", "data.image_size", "data.batch_size", "faces.num_frames",
            "trainer.max_epochs", "trainer.num_nodes", "trainer.accumulate_grad_batches", "optim.lr",
            "model.temporal_hidden", "model.temporal_layers", "triplet.margin", "triplet.embed_dim",
            "triplet.embed_epochs")


RANGES: dict[str, tuple[float, float, str]] = {
    # key: (low, high, bounds) — bounds "[]", "[)", "(]" or "()"; inf for no bound
    "calibration.target_fpr": (0.0, 1.0, "()"),
    "calibration.bins": (2, 1000, "[]"),
    "optim.weight_decay": (0.0, float("inf"), "[)"),
    "optim.momentum": (0.0, 1.0, "[)"),
    "model.drop_rate": (0.0, 1.0, "[)"),
    "faces.margin": (0.0, float("inf"), "()"),
    "faces.min_track_coverage": (0.0, 1.0, "[]"),
    "faces.workers": (0.0, float("inf"), "[)"),
    "data.self_blend": (0.0, 1.0, "[]"),
    "data.val_fraction": (0.0, 1.0, "[)"),
    "data.test_fraction": (0.0, 1.0, "[)"),
    "data.weight": (0.0, float("inf"), "()"),
    "trainer.gradient_clip_val": (0.0, float("inf"), "[)"),
    "trainer.limit_train_batches": (0.0, float("inf"), "()"),
    "trainer.limit_val_batches": (0.0, float("inf"), "()"),
    "trainer.log_every_n_steps": (1.0, float("inf"), "[)"),
    "seed": (0.0, 2.0**32 - 1, "[]"),  # what NumPy and PyTorch accept as a seed
    "data.demo_seed": (0.0, 2.0**32 - 1, "[]"),
    "data.split_seed": (0.0, 2.0**32 - 1, "[]"),
    "data.image_size": (0.0, 4096.0, "(]"),
}
"""Allowed ranges of numeric keys (besides :data:`POSITIVE` and the keys that must be >= 0)."""

NON_NEGATIVE = ("optim.warmup_epochs", "optim.freeze_backbone_epochs", "trainer.early_stopping_patience",
                "trainer.num_threads", "data.num_workers", "faces.frame_step")


def check_value(key: str, value: Any) -> None:
    """Check one config value against its key's allowed choices and range.

    Used for every experiment and for every value a sweep can sample.

    Raises:
        ConfigError: the value is outside what ``key`` allows (names the key and the range).
    """
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    if key in POSITIVE and not value > 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")
    if key in NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{key}: must be >= 0, got {value!r}")
    if key in RANGES:
        low, high, bounds = RANGES[key]
        above = value >= low if bounds[0] == "[" else value > low
        below = value <= high if bounds[1] == "]" else value < high
        if not (above and below):
            shown = f"{bounds[0]}{_num(low)}, {_num(high)}{bounds[1]}" if high != float("inf") else None
            text = f"in {shown}" if shown else f"{'>=' if bounds[0] == '[' else '>'} {_num(low)}"
            raise ConfigError(f"{key}: must be {text}, got {value!r}")
    if key.startswith("trainer.limit_") and value > 1 and value != int(value):
        raise ConfigError(f"{key}: a fraction of the batches in (0, 1] or a whole number of batches, got {value!r}")


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def check_config(cfg: ExperimentConfig) -> None:
    """Check every value of a built config against its key's choices and range, and the rules
    that tie keys together. Checks that need a registry (dataset sources, face detectors,
    backbones) live in :mod:`dflab.experiment`.

    Raises:
        ConfigError: the message names the key.
    """
    for key, value in flatten(to_dict(cfg)).items():
        check_value(key, value)
    names = [cfg.data.source]
    for i, extra in enumerate(cfg.data.extra_sources):
        key = f"data.extra_sources[{i}]"
        if not extra.root:
            raise ConfigError(f"{key}.root: give the dataset's root folder")
        if not (math.isfinite(extra.weight) and extra.weight > 0):
            raise ConfigError(f"{key}.weight: must be a finite number > 0, got {extra.weight!r}")
        names.append(extra.name or extra.source)
    if len(set(names)) != len(names):
        raise ConfigError(f"data.extra_sources: dataset names {names} repeat; give each a distinct name")
    check_devices(cfg.trainer.devices)
    if cfg.triplet.enabled and cfg.model.temporal != "none":
        raise ConfigError("triplet.enabled: the triplet stage embeds frames; set model.temporal: none")
    if cfg.monitor not in ("val/video_auroc", "val/frame_auroc", "val/video_ap", "val/loss"):
        raise ConfigError(f"monitor: {cfg.monitor!r} is not a validation metric dflab logs "
                          "(val/video_auroc, val/frame_auroc, val/video_ap, val/loss)")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        raise ConfigError(f"data.val_fraction + data.test_fraction: must leave videos to train on, got "
                          f"{cfg.data.val_fraction} + {cfg.data.test_fraction}")
    uri = cfg.logging.tracking_uri
    if not uri.startswith(TRACKING_SCHEMES) and "://" in uri:
        raise ConfigError(f"logging.tracking_uri: {uri!r} is not a tracking URI MLflow serves "
                          f"({', '.join(TRACKING_SCHEMES)}, or a local folder)")


def normalise_devices(devices: Any) -> Any:
    """``trainer.devices`` as Lightning reads it: ``"2"`` becomes ``2``, ``"0,1"`` and ``"[0,1]"``
    ``[0, 1]``;
    ``auto``, counts and lists are kept."""
    if isinstance(devices, str):
        text = devices.strip().removeprefix("[").removesuffix("]").strip()
        if text.lstrip("-").isdigit() and not devices.strip().startswith("["):
            return int(text)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if ("," in text or devices.strip().startswith("[")) and parts and all(p.isdigit() for p in parts):
            return [int(p) for p in parts]
    return devices


def check_devices(devices: Any) -> None:
    """Raises ConfigError unless ``trainer.devices`` is a count >= 1, -1 (all), ``auto`` or a
    non-empty list of distinct device indices >= 0."""
    if isinstance(devices, bool):
        ok = False
    elif isinstance(devices, int):
        ok = devices >= 1 or devices == -1
    elif isinstance(devices, str):
        ok = devices == "auto"
    else:
        ok = (isinstance(devices, list) and bool(devices) and len(set(devices)) == len(devices)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))
    if not ok:
        raise ConfigError(f"trainer.devices: {devices!r} is not a device count (>= 1, or -1 for all), "
                          "auto, or a list of device indices such as [0, 1]")


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping into dotted keys (``{"a": {"b": 1}} -> {"a.b": 1}``).

    An empty mapping stays one key (``{"a": {}} -> {"a": {}}``), so every config has the same keys
    whether or not a section is filled.
    """
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config dataclass."""
    return dataclasses.asdict(cfg)
