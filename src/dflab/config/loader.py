"""The strict config builder: a nested mapping plus ``key=value`` overrides into a typed
:class:`~dflab.config.schema.ExperimentConfig`.

Unknown keys and values of the wrong type are refused before anything runs, with a message
that names the key (and suggests the closest valid key). This package imports nothing else of
dflab; :mod:`dflab.experiment` adds the checks that need the dataset, detector and model
registries.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dflab.config.checks import check_config, flatten, normalise_devices, to_dict
from dflab.config.errors import ConfigError, suggest
from dflab.config.files import read_experiment
from dflab.config.schema import ExperimentConfig, tracking_uri_or_default

__all__ = ["ConfigError", "build_config", "build_section", "field_type", "flatten", "load_config",
           "parse_override", "to_dict"]

T = TypeVar("T")

def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


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
        raise ConfigError(f"unknown config key {prefix + k!r}{suggest(k, fields)}; valid keys under "
                          f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}")
    kwargs = {k: _coerce(v, fields[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


build_section = _build
"""Build one config dataclass from a mapping, strictly (used for dataset adapter options)."""


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
            raise ConfigError(f"unknown config key {key!r}{suggest(key, opts)}")
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


def build_config(data: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Build a config from a nested mapping plus ``key=value`` overrides, checking key names,
    types, choices and ranges (no registry: see :func:`dflab.experiment.build_experiment`).

    ``data.image_size: null`` stays ``None`` here (the backbone's own size is filled in by
    :func:`dflab.experiment.build_experiment`).

    Raises:
        ConfigError: unknown key, wrong type or invalid value; the message names the key.
    """
    merged: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data or {}))) or {}
    for text in overrides:
        key, value = parse_override(text)
        _set(merged, key, value)
    cfg = _build(ExperimentConfig, merged)
    cfg.logging.tracking_uri = tracking_uri_or_default(cfg.logging.tracking_uri)
    cfg.trainer.devices = normalise_devices(cfg.trainer.devices)
    check_config(cfg)
    return cfg


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML file (with the files it ``extends``) and apply overrides, checked
    as :func:`build_config` checks them.

    Raises:
        ConfigError: missing file, malformed YAML, unknown key or wrong type (names file and key).
    """
    path = Path(path)
    data = read_experiment(path)
    try:
        return build_config(data, overrides)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
