"""Typed, validated experiment configuration (standard library + PyYAML only)."""

from hpcxlt.config.errors import ConfigError
from hpcxlt.config.load import (
    arm_train_config,
    config_to_dict,
    dump_yaml,
    from_dict,
    load_config,
    parse_config,
    target_train_config,
)
from hpcxlt.config.schema import (
    BASELINE_ARM,
    ArmConfig,
    CostConfig,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    SamplingConfig,
    StatsConfig,
    TargetsConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "BASELINE_ARM",
    "ArmConfig",
    "ConfigError",
    "CostConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "StatsConfig",
    "TrackingConfig",
    "ModelConfig",
    "SamplingConfig",
    "TargetsConfig",
    "TrainConfig",
    "arm_train_config",
    "config_to_dict",
    "dump_yaml",
    "from_dict",
    "load_config",
    "parse_config",
    "target_train_config",
]
