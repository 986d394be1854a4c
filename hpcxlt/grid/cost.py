"""GPU-hour estimate of a plan, from data sizes and the throughput figures in the config.

Throughput figures are per GPU, so the estimate is in GPU-hours whatever the number of GPUs per job
(assuming linear scaling, which is optimistic for multi-node ZeRO-3).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcxlt.config import ExperimentConfig, arm_train_config, target_train_config
from hpcxlt.grid.plan import Plan, arm_languages

# English (or total) training examples of the real data sets, from their papers / hub cards.
# Used only for the estimate; override with cost.train_examples in the config.
TRAIN_EXAMPLES = {
    "mnli": 392_702,  # MNLI train (Williams et al. 2018)
    "anli+": 162_865 + 392_702 + 550_152,  # ANLI R1-R3 + MNLI + SNLI train (Phang et al. 2020 'ANLI+')
    "qqp": 363_846,  # GLUE QQP train
    "sst2": 67_349,  # GLUE SST-2 train
    "squad": 87_599,  # SQuAD v1.1 train
    "hellaswag": 39_905,  # HellaSwag train
    "cosmosqa": 25_262,  # Cosmos QA train
    "commonsenseqa": 9_741,  # CommonsenseQA train
    "siqa": 33_410,  # Social IQa train
    "ccg": 38_015,  # CCGbank train as used by jiant (sections 02-21)
    "xnli": 392_702,  # trained on MNLI
    "xquad": 87_599,  # trained on SQuAD v1.1
    "mlqa": 87_599,  # trained on SQuAD v1.1
    "lareqa": 87_599,  # trained on SQuAD v1.1 (XQuAD-R)
    "tydiqa": 3_696,  # TyDiQA-GoldP English train
    "panx": 20_000,  # WikiANN English train (Rahimi et al. 2019 split)
    "udpos": 21_253,  # UD English treebanks train (XTREME)
    "xcopa": 400,  # COPA train (SIQA first in XTREME-R)
}
DEFAULT_PER_LANGUAGE = 5_000
"""Assumed training examples per language when a task's size is unknown (low-resource sets are small)."""


@dataclass(frozen=True, kw_only=True)
class StageCost:
    """Estimated work of one stage."""

    stage: str
    """Stage name."""
    samples: int
    """Examples processed (training: examples x epochs; evaluation: examples x splits)."""
    gpu_hours: float
    """Estimated GPU-hours."""


def _train_examples(cfg: ExperimentConfig, task: str, langs: tuple[str, ...]) -> int:
    if task in cfg.cost.train_examples:
        return cfg.cost.train_examples[task]
    if task in TRAIN_EXAMPLES:
        return TRAIN_EXAMPLES[task]
    return DEFAULT_PER_LANGUAGE * max(1, len(langs))


def _run_samples(examples: int, train) -> int:
    if train.max_steps is not None:
        return train.max_steps * train.micro_batch_size * train.grad_accum
    return int(examples * train.epochs)


def estimate(cfg: ExperimentConfig, plan: Plan) -> list[StageCost]:
    """GPU-hours per stage for the cells of `plan`."""
    train_rate = cfg.cost.train_samples_per_second * 3600
    eval_rate = cfg.cost.eval_samples_per_second * 3600
    inter = 0
    for cell in plan.stage_cells("intermediate"):
        arm = cfg.arm(cell.arm)
        langs = arm_languages(cfg, arm.name)
        # a budgeted task gives at most its budget (arms[].examples)
        examples = sum(
            min(_train_examples(cfg, task, langs[task]), arm.examples.get(task, 10**12)) for task in arm.tasks
        )
        inter += _run_samples(examples, arm_train_config(cfg, arm))
    target = 0
    for cell in plan.stage_cells("target"):
        if cell.target is None:
            raise ValueError(f"target cell {cell.key} names no target task")
        examples = _train_examples(cfg, cell.trains or cell.target, ("en",))
        target += _run_samples(examples, target_train_config(cfg, cell.target))
    evals = len(plan.stage_cells("eval")) * cfg.cost.eval_examples_per_language * len(cfg.eval.splits)
    return [
        StageCost(stage="intermediate", samples=inter, gpu_hours=inter / train_rate),
        StageCost(stage="target", samples=target, gpu_hours=target / train_rate),
        StageCost(stage="eval", samples=evals, gpu_hours=evals / eval_rate),
    ]
