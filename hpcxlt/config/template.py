"""`hpcxlt init-config OUT.yaml`: a commented experiment config, made from the schema itself.

Every key of `ExperimentConfig` and its sections is written with its default and its one-line docstring
as a comment (read from the schema's source, so the template never drifts from what `load_config`
accepts); the required keys (name, arms, targets) get a small working example. The result loads.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from functools import cache
from typing import Any

import yaml

from hpcxlt.config import schema
from hpcxlt.config.load import config_to_dict

EXAMPLE: dict[str, Any] = {
    "name": "my-experiment",
    "arms": [
        {"name": "none"},
        {"name": "en", "tasks": ["mnli"]},
        {"name": "en_lowres", "tasks": ["mnli", "masakhaner2"], "compare_to": "en"},
    ],
    "targets": {"tasks": ["xnli", "panx", "xquad"]},
}


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the one-line docstring written under it in the class body."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _section(cls: type, values: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    docs = field_docs(cls)
    hints = {f.name: f for f in dataclasses.fields(cls)}
    lines = []
    for name, value in values.items():
        doc = docs.get(name, "")
        kind = hints[name].type if name in hints else None
        nested = next(
            (
                c
                for c in vars(schema).values()
                if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__name__ == str(kind)
            ),
            None,
        )
        if nested is not None and isinstance(value, dict) and value:
            lines.append(f"{pad}{name}:{'':<{max(1, 28 - len(pad) - len(name))}}# {doc}")
            lines += _section(nested, value, indent + 1)
        else:
            text = f"{pad}{name}: {_flow(value)}"
            lines.append(f"{text:<40}# {doc}" if len(text) < 40 else f"{text}  # {doc}")
    return lines


def template() -> str:
    cfg = schema.ExperimentConfig(
        name=EXAMPLE["name"],
        arms=tuple(schema.ArmConfig(**arm) for arm in EXAMPLE["arms"]),
        targets=schema.TargetsConfig(tasks=tuple(EXAMPLE["targets"]["tasks"])),
    )
    values = config_to_dict(cfg)
    values["arms"] = EXAMPLE["arms"]  # the example's own keys; every arm key is listed below
    arm_keys = "\n".join(f"#   {name}: {doc}" for name, doc in field_docs(schema.ArmConfig).items())
    lines = [
        f"# {schema.ExperimentConfig.__doc__}",
        "# Written by `hpcxlt init-config` from the config schema: every key with its default; edit, then",
        "# `hpcxlt plan THIS.yaml` shows what it runs and costs. Keys an arm takes:",
        arm_keys,
        "",
    ]
    lines += _section(schema.ExperimentConfig, values, 0)
    return "\n".join(lines) + "\n"


__all__ = ["field_docs", "template"]
