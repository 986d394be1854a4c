"""Which arms a config compares, and which target languages each comparison can call zero-shot.

    comparisons(cfg)                 -> [Comparison(kind, arm, other)]: vs 'none', vs compare_to, vs control
    seen_languages(cfg, arm)         -> the languages an arm's intermediate tasks train on
    zero_shot(cfg, comparison, langs)-> (unseen, seen): target languages neither arm trained on, and the rest

Zero-shot means unseen. The low-resource arms train on target languages (sw/te TyDiQA, the MasakhaNER
languages), their matched controls on de/fr/es/zh/ru/ar (WikiANN's train splits there are PAN-X's), and
every arm with an English task on English; a language one arm trained on and the other did not is no
zero-shot evidence for either. The headline rows of the significance tables use only the unseen
languages; the seen ones get a row of their own that says which languages were moved and why. `plan`
prints, per comparison and target, how many unseen languages remain, and a comparison with none at all
is refused when the config is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcxlt.config import ExperimentConfig
from hpcxlt.config.errors import ConfigError
from hpcxlt.config.schema import BASELINE_ARM
from hpcxlt.grid.plan import arm_languages, eval_languages

VS_NONE, VS_COMPARE_TO, VS_CONTROL = "vs none", "vs compare_to", "vs control"


@dataclass(frozen=True)
class Comparison:
    """One tested pair of arms."""

    kind: str
    """'vs none' (every arm against the baseline), 'vs compare_to' (multilingual vs English-only) or 'vs control'."""
    arm: str
    """The arm whose gain is measured."""
    other: str
    """The arm it is measured against."""


def comparisons(cfg: ExperimentConfig) -> list[Comparison]:
    """Every arm against 'none' (when the config has it), then the research question's pairs."""
    names = [arm.name for arm in cfg.arms]
    out = [Comparison(VS_NONE, name, BASELINE_ARM) for name in names if BASELINE_ARM in names and name != BASELINE_ARM]
    out += [Comparison(VS_COMPARE_TO, arm.name, arm.compare_to) for arm in cfg.arms if arm.compare_to]
    return out + [Comparison(VS_CONTROL, arm.name, arm.control) for arm in cfg.arms if arm.control]


def seen_languages(cfg: ExperimentConfig, arm: str) -> frozenset[str]:
    """The languages the arm's intermediate tasks train on ('none': nothing)."""
    return frozenset(lang for langs in arm_languages(cfg, arm).values() for lang in langs)


def zero_shot(cfg: ExperimentConfig, comparison: Comparison, langs) -> tuple[list[str], list[str]]:
    """(unseen, seen) of `langs`, in their order: seen = trained on by either arm of the comparison."""
    seen = seen_languages(cfg, comparison.arm) | seen_languages(cfg, comparison.other)
    return [lang for lang in langs if lang not in seen], [lang for lang in langs if lang in seen]


def unseen_counts(cfg: ExperimentConfig) -> list[tuple[Comparison, dict[str, int], list[str]]]:
    """Per comparison: target -> how many of its languages are unseen, and the seen languages moved out."""
    out = []
    for comparison in comparisons(cfg):
        counts, moved = {}, set()
        for target in cfg.targets.tasks:
            unseen, seen = zero_shot(cfg, comparison, eval_languages(cfg, target))
            counts[target] = len(unseen)
            moved |= set(seen)
        out.append((comparison, counts, sorted(moved)))
    return out


def check_zero_shot(cfg: ExperimentConfig, where: str) -> None:
    """Refuse a comparison that has no unseen target language at all: it could say nothing zero-shot."""
    for comparison, counts, moved in unseen_counts(cfg):
        if counts and not any(counts.values()):
            raise ConfigError(
                f"{where}: {comparison.arm} {comparison.kind} ({comparison.other}) has no target language that "
                f"neither arm trained on (both together train on {', '.join(moved)}): add target languages "
                "outside them (targets.languages) or compare other arms"
            )


__all__ = [
    "Comparison",
    "VS_COMPARE_TO",
    "VS_CONTROL",
    "VS_NONE",
    "check_zero_shot",
    "comparisons",
    "seen_languages",
    "unseen_counts",
    "zero_shot",
]
