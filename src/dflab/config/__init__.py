"""Experiment configuration: the typed schema, strict YAML loading and ``key=value`` overrides.

The bottom floor of dflab: this package imports nothing else of dflab. Checks that need a
registry (dataset sources, face detectors, backbones) are in :mod:`dflab.experiment`.
"""

from dflab.config.checks import flatten, to_dict
from dflab.config.errors import ConfigError
from dflab.config.files import read_experiment, read_yaml, save_config
from dflab.config.loader import build_config, load_config
from dflab.config.schema import ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "build_config", "flatten", "load_config", "read_experiment",
           "read_yaml", "save_config", "to_dict"]
