"""Typed, validated configuration: dataclasses, presets (smoke / local / paper), overrides, hashes.

Every section validates itself on construction and raises `ConfigError` naming the field,
the bad value and what would be accepted. Presets are plain functions. Any field can be
overridden from the command line with a dotted path: ``train.lr=1e-4``, a method's own
section's under its name: ``methods.mtiql.beta=10``.

Paper values (App. A, App. D, App. G) are the `paper` preset. Where the authors' public
code departs from the paper, the paper is the default and the departure is an option,
noted at the field.
"""

from mtdiff.config.base import ConfigError, MethodConfig, config_hash, to_dict
from mtdiff.config.overrides import apply_overrides, flatten, from_dict
from mtdiff.config.presets import PRESETS, Preset, get_preset, local, paper, smoke
from mtdiff.config.sections import (
    SUITES,
    CollectConfig,
    Config,
    DataConfig,
    DiffusionConfig,
    DistillConfig,
    EvalConfig,
    ExperimentConfig,
    Maze2DConfig,
    MetaWorldConfig,
    ModelConfig,
    MujocoSuiteConfig,
    OfflineConfig,
    SACConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "PRESETS", "CollectConfig", "Config", "ConfigError", "DataConfig",
    "DiffusionConfig", "DistillConfig",
    "EvalConfig", "ExperimentConfig", "Maze2DConfig", "MetaWorldConfig", "MethodConfig",
    "ModelConfig",
    "MujocoSuiteConfig", "OfflineConfig", "Preset", "SUITES",
    "SACConfig", "TrackingConfig", "TrainConfig", "apply_overrides", "config_hash", "flatten",
    "from_dict", "get_preset", "local", "paper", "smoke", "to_dict",
]
