"""Load experiment YAML files, apply ``key=value`` overrides and validate them strictly.

Unknown keys and values of the wrong type are refused before anything runs, with a message
that names the key (and suggests the closest valid key).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dflab.config.schema import ExperimentConfig

T = TypeVar("T")

TRACKING_SCHEMES = ("sqlite:///", "file://", "http://", "https://", "postgresql", "mysql", "mssql", "databricks")
"""Tracking URIs MLflow serves."""

CHOICES: dict[str, tuple[str, ...]] = {
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
            "trainer.max_epochs", "trainer.devices", "trainer.accumulate_grad_batches", "optim.lr",
            "model.temporal_hidden", "model.temporal_layers", "triplet.margin", "triplet.embed_dim",
            "triplet.embed_epochs")


RANGES: dict[str, tuple[float, float, str]] = {
    # key: (low, high, bounds) — bounds "[]", "[)", "(]" or "()"; inf for no bound
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


class ConfigError(ValueError):
    """An experiment configuration is invalid; the message names the key."""


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if value is None:  # an empty section (``faces:``) keeps its defaults
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of settings, got {type(value).__name__} {value!r}")
        return _build(typing.cast(type, tp), value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp in (list, dict):
        if isinstance(value, tp):
            return value
    elif origin in (list, tuple):
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        if isinstance(value, str):  # a single value where a list is expected
            value = [value]
        if isinstance(value, (list, tuple)):
            items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif tp is Any:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{key}: expected {name}, got {type(value).__name__} {value!r}")


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    fields = _fields(cls)
    for k in data:
        if not isinstance(k, str):  # YAML reads 1: and yes: as a number and a boolean
            raise ConfigError(f"config key {prefix}{k!r} is not a name (YAML read it as "
                              f"{type(k).__name__}); keys are names such as {prefix}{next(iter(fields))}")
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"unknown config key {prefix + k!r}{_suggest(k, fields)}; valid keys under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}")
    kwargs = {k: _coerce(v, fields[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


build_section = _build
"""Build one config dataclass from a mapping, strictly (used for dataset adapter options)."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict of a config dataclass."""
    return dataclasses.asdict(cfg)


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


def field_type(key: str, cls: type = ExperimentConfig) -> Any:
    """Type of a dotted config key.

    Raises:
        ConfigError: the key does not exist (names it and suggests the closest one).
    """
    parts = key.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        if tp is dict or typing.get_origin(tp) is dict:  # options checked by their owner
            return Any
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[:i])} is not a section")
        fields = _fields(typing.cast(type, tp))
        if part not in fields:
            prefix = ".".join(parts[:i])
            opts = [f"{prefix}.{f}" if prefix else f for f in fields]
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, opts)}")
        tp = fields[part]
    return tp


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override; the value is read as YAML unless the key is a string.

    Raises:
        ConfigError: not of the form ``key=value``, or an unknown key.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    tp = field_type(key)
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"override {key!r} names a whole section; set one of its keys instead")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"override {key}={raw}: the value is not valid YAML ({problem})") from None
    accepts_str = tp is str or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                                and str in typing.get_args(tp))
    if accepts_str and not (value is None and raw.strip().lower() in ("null", "none", "~")):
        value = raw
    return key, value


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:  # a missing or empty (``faces:``) section
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[:i + 1])} is a value, not a section")
    node[parts[-1]] = value


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


def check_backbone(name: str) -> None:
    """Check that ``model.backbone`` names a dflab model or a timm model (imports timm).

    Raises:
        ConfigError: unknown name (with the closest known names).
    """
    import timm

    from dflab.models import list_models, mesonet  # noqa: F401  (mesonet registers dflab's models)

    ours = list_models()
    if name in ours or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, ours + timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"model.backbone: unknown model {name!r}{hint}; use a dflab model ({', '.join(ours)}) "
                      "or any timm model name (timm.list_models())")


def _validate(cfg: ExperimentConfig) -> None:
    flat = flatten(to_dict(cfg))
    for key, value in flat.items():
        check_value(key, value)
    from dflab.data.datasets import build_options, dataset_names

    if cfg.data.source not in dataset_names():
        raise ConfigError(f"data.source: {cfg.data.source!r} is not one of {', '.join(dataset_names())}"
                          f"{_suggest(cfg.data.source, dataset_names())}")
    build_options(cfg.data.source, cfg.data.options)
    names = [cfg.data.source]
    for i, extra in enumerate(cfg.data.extra_sources):
        key = f"data.extra_sources[{i}]"
        if extra.source not in dataset_names() or extra.source == "demo":
            valid = [n for n in dataset_names() if n != "demo"]
            raise ConfigError(f"{key}.source: {extra.source!r} is not one of {', '.join(valid)}")
        if not extra.root:
            raise ConfigError(f"{key}.root: give the dataset's root folder")
        if not (math.isfinite(extra.weight) and extra.weight > 0):
            raise ConfigError(f"{key}.weight: must be a finite number > 0, got {extra.weight!r}")
        build_options(extra.source, extra.options, prefix=f"{key}.options.")
        names.append(extra.name or extra.source)
    if len(set(names)) != len(names):
        raise ConfigError(f"data.extra_sources: dataset names {names} repeat; give each a distinct name")
    _check_detector(cfg.faces.detector, cfg.faces.detector_options)
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
    check_backbone(cfg.model.backbone)  # last: it imports timm (and torch)


def _check_detector(name: str, options: Mapping[str, Any]) -> None:
    """Build the detector (its models load lazily) so bad names and options fail at load time."""
    import inspect

    from dflab.faces.detector import available_detectors, create_detector, detector_factory

    if name not in available_detectors():
        raise ConfigError(f"faces.detector: {name!r} is not one of {', '.join(available_detectors())}"
                          f"{_suggest(name, available_detectors())}")
    accepted = [p for p in inspect.signature(detector_factory(name)).parameters if p != "self"]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"faces.detector_options.{key}: unknown option of detector {name!r}; "
                              f"it accepts {', '.join(accepted) or 'none'}{_suggest(key, accepted)}")
    try:
        create_detector(name, **options)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(f"faces.detector_options ({name}): {err}") from err


def build_config(data: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Build a validated config from a nested mapping plus ``key=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong type or invalid value; the message names the key.
    """
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data or {}))) or {}
    for text in overrides:
        key, value = parse_override(text)
        _set(merged, key, value)
    cfg = _build(ExperimentConfig, merged)
    if cfg.data.image_size is None:  # the backbone's own input size
        from dflab.models import default_image_size

        try:
            cfg.data.image_size = default_image_size(cfg.model.backbone)
        except ValueError as err:
            raise ConfigError(str(err)) from err
    _validate(cfg)
    return cfg


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key fails in PyYAML's own construction
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str = "experiment") -> Any:
    """Parse a YAML file safely (plain data only, no Python objects).

    Raises:
        ConfigError: the file is missing, not UTF-8 text, or not valid YAML (names the file,
            line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8") from None
    try:
        loader = _StrictLoader(text)  # a SafeLoader: plain data only, nothing constructed or run
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None


MAX_EXTENDS = 8
"""How deep ``extends:`` chains may go."""


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: mappings merge key by key, anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_experiment(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """An experiment file's settings, with the file named by its ``extends:`` key (a path
    relative to the file) deep-merged underneath, recursively. The strict check runs on the
    merged result (:func:`build_config`).

    Raises:
        ConfigError: a file is missing or malformed, or ``extends`` loops or is not a file path.
    """
    path = Path(path)
    if path.resolve() in _chain:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(str(p) for p in _chain)}")
    if len(_chain) >= MAX_EXTENDS:
        raise ConfigError(f"{path}: extends goes deeper than {MAX_EXTENDS} files")
    data = read_yaml(path) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level must be a mapping of settings")
    data = dict(data)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(f"{path}: extends: expected the path of a base experiment file, got {parent!r}")
    base_path = path.parent / parent
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: {base_path} does not exist")
    return deep_merge(read_experiment(base_path, (*_chain, path.resolve())), data)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML file (with the files it ``extends``) and apply overrides.

    Raises:
        ConfigError: missing file, malformed YAML, unknown key or wrong type (names file and key).
    """
    path = Path(path)
    data = read_experiment(path)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level must be a mapping of settings")
    try:
        return build_config(data, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable by :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path
