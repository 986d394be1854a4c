"""Load, override, validate and dump experiment configs.

`from_dict` turns plain YAML data into the frozen dataclasses of `schema.py`, checking every key and
type on the way, so a typo fails with the key path and the allowed keys instead of running with a
default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from hpcxlt.config.errors import ConfigError
from hpcxlt.config.schema import ArmConfig, ExperimentConfig, TrainConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Convert one YAML value to the annotated type `tp`, or raise ConfigError naming `path`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _convert(value, inner[0], path)
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp):
        # A type hint is a class, never a dataclass instance.
        return from_dict(typing.cast("type[DataclassInstance]", tp), value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return tuple(_convert(item, args[0], f"{path}[{i}]") for i, item in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping (key: value), got {value!r}")
        key_tp, value_tp = args if args else (str, Any)
        return types.MappingProxyType(
            {_convert(k, key_tp, path): _convert(v, value_tp, f"{path}.{k}") for k, v in value.items()}
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # PyYAML reads '2e-5' (no dot) as a string, so numeric strings are accepted here.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from plain data, rejecting unknown keys, missing keys and wrong types."""
    where = path or "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of {cls.__name__} keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key{hint}; allowed: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{sub}: required key is missing")
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in nested dicts/lists, creating mappings on the way."""
    parts = dotted.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {dotted!r}: {here} needs an index below {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply `key.path=value` overrides (values parsed as YAML) to raw config data."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE, e.g. target.lr=2e-5")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r}: empty key")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return data


def parse_config(data: Any, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Raw data (+ overrides) -> validated ExperimentConfig (structural checks only)."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}")
    data = apply_overrides(data, overrides)
    cfg = from_dict(ExperimentConfig, data)
    cfg.check()
    for arm in cfg.arms:
        arm_train_config(cfg, arm)
    for task in cfg.targets.tasks:
        target_train_config(cfg, task)
    return cfg


def read_yaml(path: str | os.PathLike, what: str = "config", error: type[ConfigError] = ConfigError) -> Any:
    """Plain data of a YAML file ({} when empty); unreadable files and bad YAML raise `error` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read {what} ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from None
    return {} if data is None else data


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML file into a validated ExperimentConfig; every error names the file."""
    data = read_yaml(path)
    try:
        return parse_config(data, overrides)
    except ConfigError as err:
        raise blame(path, overrides, err) from None


def blame(path: str | os.PathLike, overrides: list[str] | tuple[str, ...], err: ConfigError) -> ConfigError:
    """The error prefixed with where the bad value came from: the `-o KEY=VALUE` that set it, else the file."""

    text = str(err)
    dotted = re.sub(r"\[(\d+)\]", r".\1", text)  # arms[1].name is what -o arms.1.name sets
    for override in reversed(overrides):  # the last override of a key is the one that counts
        key = override.partition("=")[0].strip()
        if key and any(dotted.startswith(f"{key}{end}") for end in (":", ".", "[")):
            return ConfigError(f"-o {override}: {text}")
    return ConfigError(f"{path}: {text}")


def _with_train_overrides(base: TrainConfig, overrides: Mapping[str, Any], path: str) -> TrainConfig:
    if not overrides:
        return base
    merged = {**config_to_dict(base), **dict(overrides)}
    cfg = from_dict(TrainConfig, merged, path)
    cfg.check(path)
    return cfg


def arm_train_config(cfg: ExperimentConfig, arm: ArmConfig) -> TrainConfig:
    """The intermediate hyperparameters of `arm` (experiment defaults + the arm's overrides)."""
    index = cfg.arms.index(arm)
    return _with_train_overrides(cfg.intermediate, arm.train, f"arms[{index}].train")


def target_train_config(cfg: ExperimentConfig, task: str) -> TrainConfig:
    """The target-task hyperparameters of `task` (experiment defaults + targets.overrides[task])."""
    return _with_train_overrides(cfg.target, cfg.targets.overrides.get(task, {}), f"targets.overrides.{task}")


def config_to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for YAML/JSON output and hashing."""
    if dataclasses.is_dataclass(obj):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): config_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]
    return obj


def dump_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML that `load_config` reads back to an equal config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
