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


def train_examples(cfg: ExperimentConfig, task: str, langs: tuple[str, ...]) -> int:
    """Training examples of `task` in `langs`: the config's figure, else the published size, else a default
    per language; at most `data.max_train_examples` per language where the config caps them (a smoke test,
    a rehearsal), as the data loader does."""
    if task in cfg.cost.train_examples:
        examples = cfg.cost.train_examples[task]
    elif task in TRAIN_EXAMPLES:
        examples = TRAIN_EXAMPLES[task]
    else:
        examples = DEFAULT_PER_LANGUAGE * max(1, len(langs))
    cap = cfg.data.max_train_examples
    return examples if cap is None else min(examples, cap * max(1, len(langs)))


def eval_examples(cfg: ExperimentConfig) -> int:
    """Examples one evaluation cell reads per split: `cost.eval_examples_per_language`, at most
    `data.max_eval_examples` where the config caps them."""
    cap = cfg.data.max_eval_examples
    per_language = cfg.cost.eval_examples_per_language
    return per_language if cap is None else min(per_language, cap)


def _run_samples(examples: int, train) -> int:
    if train.max_steps is not None:
        return train.max_steps * train.micro_batch_size * train.grad_accum
    return int(examples * train.epochs)


def cell_samples(cfg: ExperimentConfig, plan: Plan) -> dict[str, int]:
    """Examples each cell of `plan` processes (training: examples x epochs, or max_steps x the global batch
    per process; evaluation: `eval_examples` x splits; both within the config's data caps): what `estimate` sums per stage,
    and what the makespan (`grid/resource_plan.py`) schedules job by job."""
    out: dict[str, int] = {}
    # a cell's figure depends on its arm or task, never its seed: each is worked out once (resolving a
    # stage's hyperparameters builds a config, ~1 ms: per cell it was seconds on a 100k-cell grid)
    per_arm: dict[str, int] = {}
    for cell in plan.stage_cells("intermediate"):
        if cell.arm not in per_arm:
            arm = cfg.arm(cell.arm)
            langs = arm_languages(cfg, arm.name)
            # a budgeted task gives at most its budget (arms[].examples)
            examples = sum(
                min(train_examples(cfg, task, langs[task]), arm.examples.get(task, 10**12)) for task in arm.tasks
            )
            per_arm[cell.arm] = _run_samples(examples, arm_train_config(cfg, arm))
        out[cell.key] = per_arm[cell.arm]
    per_target: dict[tuple[str, str | None], int] = {}
    for cell in plan.stage_cells("target"):
        if cell.target is None:
            raise ValueError(f"target cell {cell.key} names no target task")
        task = (cell.target, cell.trains)
        if task not in per_target:
            examples = train_examples(cfg, cell.trains or cell.target, ("en",))
            per_target[task] = _run_samples(examples, target_train_config(cfg, cell.target))
        out[cell.key] = per_target[task]
    per_eval = eval_examples(cfg) * len(cfg.eval.splits)
    for cell in plan.stage_cells("eval"):
        out[cell.key] = per_eval
    return out


def stage_rate(cfg: ExperimentConfig, stage: str) -> float:
    """Examples per GPU-hour of a stage: the config's training or inference throughput."""
    per_second = cfg.cost.eval_samples_per_second if stage == "eval" else cfg.cost.train_samples_per_second
    return per_second * 3600


def estimate(cfg: ExperimentConfig, plan: Plan) -> list[StageCost]:
    """GPU-hours per stage for the cells of `plan`."""
    samples = cell_samples(cfg, plan)
    out = []
    for stage in ("intermediate", "target", "eval"):
        total = sum(samples[cell.key] for cell in plan.stage_cells(stage))
        out.append(StageCost(stage=stage, samples=total, gpu_hours=total / stage_rate(cfg, stage)))
    return out
