"""Experiment configuration: typed schema, YAML loading, strict overrides."""

from dflab.config.loader import (
    ConfigError,
    build_config,
    flatten,
    load_config,
    save_config,
    to_dict,
)
from dflab.config.schema import ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "build_config", "flatten", "load_config", "save_config", "to_dict"]
