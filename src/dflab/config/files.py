"""Experiment files: safe YAML reading with file:line:column errors, ``extends:`` chains, saving."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dflab.config.checks import to_dict
from dflab.config.errors import ConfigError
from dflab.config.schema import ExperimentConfig


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


def save_config(cfg: ExperimentConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable by :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path
