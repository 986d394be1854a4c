"""The experiment config: frozen, keyword-only dataclasses, one docstring per field.

Structural checks (types, ranges, names) live in each class's `check()`; checks that need the task
registry (task names, languages) live in `hpcxlt.tasks.check`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcxlt.config.errors import ConfigError

SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_+-]{0,63}$")
"""Names that end up in paths, job names and sbatch scripts: lower-case letters, digits, '_', '+', '-'."""

SAMPLING_RULES = ("proportional", "temperature", "uniform", "weights")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DATA_SOURCES = ("hub", "local")
EVAL_SPLITS = ("dev", "test")
QA_CONVENTIONS = ("em_f1", "f1")
SELECT_BY = ("metric", "loss", "last")
CORRECTIONS = ("holm", "bh", "by", "none")
FAMILIES = ("question", "table")
WANDB_MODES = ("offline", "online")
BASELINE_ARM = "none"


def check_name(value: str, path: str) -> None:
    if not SAFE_NAME.match(value):
        raise ConfigError(
            f"{path}: {value!r} is not a safe name; use 1-64 characters of a-z, 0-9, '_', '+', '-', "
            "starting with a letter or digit (names end up in paths and sbatch scripts)"
        )


def _positive(value: float, path: str, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which pretrained encoder every run starts from."""

    name_or_path: str = "FacebookAI/xlm-roberta-large"
    """Hugging Face hub id or local folder of the pretrained model (and its tokenizer)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to pin; None takes the default branch."""

    def check(self, path: str) -> None:
        if not self.name_or_path.strip():
            raise ConfigError(f"{path}.name_or_path: must not be empty")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where task data comes from and where its tokenized form is cached."""

    source: str = "hub"
    """'hub' (Hugging Face data set ids from the registry) or 'local' (files under `root`)."""
    root: str | None = None
    """Folder of local data laid out as <task>/<lang>/<split>.jsonl; required when source is 'local'."""
    cache_dir: str = "~/.cache/hpcxlt/features"
    """Folder for tokenized features, keyed by tokenizer + task + settings, shared by all runs."""
    max_train_examples: int | None = None
    """Cap on training examples per task and language (None: all); useful for smoke tests."""
    max_eval_examples: int | None = None
    """Cap on evaluation examples per task and language (None: all)."""
    hub_mirror: str | None = None
    """Folder of local copies of hub data set repositories, `<mirror>/<owner>/<name>[@<revision>]`, read instead of the hub (source 'hub')."""

    def check(self, path: str) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"{path}.source: {self.source!r} is not allowed; choose one of {', '.join(DATA_SOURCES)}")
        if self.source == "local" and not self.root:
            raise ConfigError(f"{path}.root: required when {path}.source is 'local'")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None:
                _positive(value, f"{path}.{name}")


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """How a multi-task intermediate arm draws its batches from tasks and languages."""

    rule: str = "proportional"
    """'proportional' (to data size), 'temperature' (size ** (1/T)), 'uniform', or 'weights' (fixed)."""
    temperature: float = 1.0
    """T for the 'temperature' rule; T=1 is proportional, large T approaches uniform."""
    weights: Mapping[str, float] = field(default_factory=dict)
    """Fixed weight per task (or 'task:lang') for the 'weights' rule."""

    def check(self, path: str) -> None:
        if self.rule not in SAMPLING_RULES:
            raise ConfigError(f"{path}.rule: {self.rule!r} is not allowed; choose one of {', '.join(SAMPLING_RULES)}")
        _positive(self.temperature, f"{path}.temperature")
        if self.rule == "weights" and not self.weights:
            raise ConfigError(f"{path}.weights: required (task -> weight) when {path}.rule is 'weights'")
        for key, weight in self.weights.items():
            _positive(weight, f"{path}.weights.{key}", allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyperparameters of one fine-tuning run (intermediate or target)."""

    lr: float = 1e-5
    """Peak learning rate of AdamW."""
    micro_batch_size: int = 4
    """Examples per process per forward pass."""
    grad_accum: int = 8
    """Micro-batches accumulated per optimizer step (global batch = micro_batch_size x grad_accum x processes)."""
    epochs: float = 2.0
    """Passes over the training data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Optimizer steps to train for; overrides epochs when set."""
    warmup_ratio: float = 0.1
    """Fraction of steps with linear warm-up; the rest decays linearly to zero."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and LayerNorm)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables clipping)."""
    max_length: int = 128
    """Maximum tokens per example (QA windows use it as the window length)."""
    doc_stride: int = 32
    """Overlap between QA context windows, in tokens."""
    eval_every: int = 0
    """Evaluate on the English dev set every N optimizer steps (0: never; the last step's model is exported)."""
    select_by: str = "metric"
    """Exported checkpoint: 'metric' (best dev task metric, as XTREME), 'loss' (lowest dev loss) or 'last'."""
    patience: int = 0
    """Stop after this many dev evaluations without improvement (jiant: 30 of 1,000 steps each; 0: never)."""
    min_delta: float = 0.0
    """Smallest change of the selection figure (points, or loss) that counts as an improvement."""
    save_every: int = 500
    """Write a checkpoint every N optimizer steps (0: only on signals and at the end)."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage, 0-3."""
    precision: str = "auto"
    """'auto' (bf16 on GPUs that support it, fp32 on CPU), 'bf16', 'fp16' or 'fp32'."""

    def check(self, path: str) -> None:
        _positive(self.lr, f"{path}.lr")
        _positive(self.micro_batch_size, f"{path}.micro_batch_size")
        _positive(self.grad_accum, f"{path}.grad_accum")
        _positive(self.epochs, f"{path}.epochs")
        if self.max_steps is not None:
            _positive(self.max_steps, f"{path}.max_steps")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{path}.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        _positive(self.weight_decay, f"{path}.weight_decay", allow_zero=True)
        _positive(self.max_grad_norm, f"{path}.max_grad_norm", allow_zero=True)
        if not 8 <= self.max_length <= 4096:
            raise ConfigError(f"{path}.max_length: must be in [8, 4096], got {self.max_length}")
        if not 0 < self.doc_stride < self.max_length:
            raise ConfigError(f"{path}.doc_stride: must be in (0, max_length={self.max_length}), got {self.doc_stride}")
        _positive(self.eval_every, f"{path}.eval_every", allow_zero=True)
        if self.select_by not in SELECT_BY:
            raise ConfigError(
                f"{path}.select_by: {self.select_by!r} is not allowed; choose one of {', '.join(SELECT_BY)}"
            )
        _positive(self.patience, f"{path}.patience", allow_zero=True)
        _positive(self.min_delta, f"{path}.min_delta", allow_zero=True)
        if self.patience and self.select_by == "last":
            raise ConfigError(
                f"{path}.patience: early stopping needs a selection figure; select_by 'last' has none "
                "(use select_by 'metric' or 'loss', or patience 0)"
            )
        if self.patience and not self.eval_every:
            raise ConfigError(
                f"{path}.patience: early stopping counts dev evaluations, but eval_every is 0 "
                "(set eval_every, e.g. 1000 as jiant does, or patience 0)"
            )
        _positive(self.save_every, f"{path}.save_every", allow_zero=True)
        _positive(self.keep_last, f"{path}.keep_last")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(
                f"{path}.zero_stage: must be one of 0, 1, 2, 3 (DeepSpeed ZeRO stages), got {self.zero_stage}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"{path}.precision: {self.precision!r} is not allowed; choose one of {', '.join(PRECISIONS)}"
            )


@dataclass(frozen=True, kw_only=True)
class ArmConfig:
    """One intermediate arm: 'none' (baseline), one task, or a multi-task mix."""

    name: str
    """Safe identifier of the arm; 'none' is the no-intermediate baseline and takes no tasks."""
    tasks: tuple[str, ...] = ()
    """Intermediate tasks trained together (registry names)."""
    languages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Task -> training languages to use (default: all the task's training languages)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How batches are drawn across tasks and languages."""
    compare_to: str | None = None
    """English-only arm that this arm adds multilingual low-resource data to (pairs arms for the research-question table)."""
    control: str | None = None
    """Matched arm that adds the same kinds of data in high-resource languages (contrasted in the significance tables)."""
    examples: Mapping[str, int] = field(default_factory=dict)
    """Task -> training examples of it in this arm, a fixed subset spread as evenly as the data allows over its languages (equal budgets match arms; unset: all)."""
    train: Mapping[str, object] = field(default_factory=dict)
    """Overrides of the `intermediate` hyperparameters for this arm (TrainConfig keys)."""

    @property
    def is_baseline(self) -> bool:
        return self.name == BASELINE_ARM

    def check(self, path: str) -> None:
        check_name(self.name, f"{path}.name")
        if self.is_baseline and self.tasks:
            raise ConfigError(
                f"{path}.tasks: the '{BASELINE_ARM}' arm is the no-intermediate baseline and takes no tasks"
            )
        if not self.is_baseline and not self.tasks:
            raise ConfigError(f"{path}.tasks: arm {self.name!r} needs at least one intermediate task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"{path}.tasks: lists a task twice: {list(self.tasks)}")
        for section in ("languages", "examples"):
            for task in getattr(self, section):
                if task not in self.tasks:
                    raise ConfigError(
                        f"{path}.{section}.{task}: {task!r} is not one of this arm's tasks {list(self.tasks)}"
                    )
        for task, count in self.examples.items():
            if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                raise ConfigError(
                    f"{path}.examples.{task}: must be a whole number of training examples > 0, got {count!r}"
                )
        self.sampling.check(f"{path}.sampling")


@dataclass(frozen=True, kw_only=True)
class TargetsConfig:
    """The XTREME-R target tasks, their evaluation languages and per-task hyperparameters."""

    tasks: tuple[str, ...]
    """Target task names (registry names, e.g. xnli, panx, tatoeba)."""
    languages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Task -> evaluation languages (default: all the task's languages)."""
    overrides: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    """Task -> overrides of the `target` hyperparameters (TrainConfig keys), e.g. {panx: {lr: 2e-5}}."""
    preludes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Task -> English tasks fine-tuned first, in order, the whole model carried on (XTREME-R: {xcopa: [siqa]})."""

    def check(self, path: str) -> None:
        if not self.tasks:
            raise ConfigError(f"{path}.tasks: must name at least one target task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"{path}.tasks: lists a task twice: {list(self.tasks)}")
        for section in ("languages", "overrides", "preludes"):
            for task in getattr(self, section):
                if task not in self.tasks:
                    raise ConfigError(
                        f"{path}.{section}.{task}: {task!r} is not one of targets.tasks {list(self.tasks)}"
                    )


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Zero-shot evaluation settings."""

    splits: tuple[str, ...] = ("test",)
    """Splits to evaluate in every target language: 'dev' and/or 'test'."""
    batch_size: int = 64
    """Examples per inference batch (batches are length-sorted)."""
    retrieval_layer: int = -1
    """Hidden layer whose mean-pooled states embed sentences for retrieval (XTREME uses 14 of XLM-R Large's 24; negative counts from the top)."""
    qa_convention: str = "em_f1"
    """QA task score: 'em_f1' ((EM + F1) / 2, the XTREME-R convention) or 'f1' (F1 only)."""
    languages_per_job: int = 0
    """Evaluation languages per job (each job loads the model once); 0 puts all of a target's languages in one job."""

    def check(self, path: str) -> None:
        if not self.splits:
            raise ConfigError(f"{path}.splits: must name at least one of {', '.join(EVAL_SPLITS)}")
        for split in self.splits:
            if split not in EVAL_SPLITS:
                raise ConfigError(f"{path}.splits: {split!r} is not allowed; choose from {', '.join(EVAL_SPLITS)}")
        _positive(self.batch_size, f"{path}.batch_size")
        _positive(self.languages_per_job, f"{path}.languages_per_job", allow_zero=True)
        if self.qa_convention not in QA_CONVENTIONS:
            raise ConfigError(
                f"{path}.qa_convention: {self.qa_convention!r} is not allowed; choose one of {', '.join(QA_CONVENTIONS)}"
            )


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    """Experiment trackers besides the TensorBoard event files every training cell writes (cells/<key>/tensorboard)."""

    wandb: bool = False
    """Also log to Weights & Biases (needs the `wandb` package; checked at submit)."""
    wandb_project: str = "hpcxlt"
    """W&B project."""
    wandb_entity: str | None = None
    """W&B entity (team or user; None: the default of the logged-in user)."""
    wandb_mode: str = "offline"
    """'offline' (compute nodes without internet: `wandb sync` the run folders later) or 'online'."""

    def check(self, path: str) -> None:
        if self.wandb_mode not in WANDB_MODES:
            raise ConfigError(
                f"{path}.wandb_mode: {self.wandb_mode!r} is not allowed; choose one of {', '.join(WANDB_MODES)}"
            )
        if not self.wandb_project:
            raise ConfigError(f"{path}.wandb_project: must name a W&B project")


@dataclass(frozen=True, kw_only=True)
class StatsConfig:
    """How the aggregate tables test differences between arms (docs/statistics.md)."""

    alpha: float = 0.05
    """Significance level; intervals cover 1 - alpha."""
    correction: str = "holm"
    """Multiple-comparison correction over the family: 'holm' (family-wise), 'bh' / 'by' (false discovery rate) or 'none'."""
    family: str = "question"
    """Which tests are corrected together: 'question' (every tested row of both significance tables) or 'table'."""
    bootstrap: int = 1000
    """Paired bootstrap draws of each language's test examples."""
    seed: int = 0
    """Seed of the bootstrap draws (the same run gives the same intervals)."""
    aso: bool = False
    """Also report Almost Stochastic Order over seeds (Dror et al. 2019; needs `deepsig` and 3+ seeds; slow)."""
    min_seeds: int = 2
    """Fewest common seeds a comparison needs to be tested (fewer: Δ and a test-set interval only, no p, no star)."""
    assumed_seed_sd: float = 1.0
    """Seed sd (points) of one arm's target score, for `plan`'s power lines without a pilot run (an assumption: see docs/statistics.md)."""

    def check(self, path: str) -> None:
        _positive(self.assumed_seed_sd, f"{path}.assumed_seed_sd")
        if self.min_seeds < 2:
            raise ConfigError(
                f"{path}.min_seeds: must be at least 2 (one seed cannot tell model variance from an "
                f"effect), got {self.min_seeds}"
            )
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"{path}.alpha: must be in (0, 0.5), got {self.alpha}")
        if self.family not in FAMILIES:
            raise ConfigError(f"{path}.family: {self.family!r} is not allowed; choose one of {', '.join(FAMILIES)}")
        if self.correction not in CORRECTIONS:
            raise ConfigError(
                f"{path}.correction: {self.correction!r} is not allowed; choose one of {', '.join(CORRECTIONS)}"
            )
        if self.bootstrap < 100:
            raise ConfigError(
                f"{path}.bootstrap: at least 100 draws are needed for a stable interval, got {self.bootstrap}"
            )
        _positive(self.seed, f"{path}.seed", allow_zero=True)


@dataclass(frozen=True, kw_only=True)
class CostConfig:
    """Figures behind the GPU-hour estimate that `hpcxlt plan` prints."""

    train_samples_per_second: float = 40.0
    """Training throughput of one GPU (examples/s at the configured max_length)."""
    eval_samples_per_second: float = 400.0
    """Inference throughput of one GPU (examples/s)."""
    train_examples: Mapping[str, int] = field(default_factory=dict)
    """Task -> training examples, overriding the registry's sizes (e.g. for capped or synthetic data)."""
    eval_examples_per_language: int = 2000
    """Evaluation examples assumed per language and split when estimating."""

    def check(self, path: str) -> None:
        _positive(self.train_samples_per_second, f"{path}.train_samples_per_second")
        _positive(self.eval_samples_per_second, f"{path}.eval_samples_per_second")
        _positive(self.eval_examples_per_language, f"{path}.eval_examples_per_language")
        for task, count in self.train_examples.items():
            _positive(count, f"{path}.train_examples.{task}")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """One experiment: intermediate arms x XTREME-R targets x seeds."""

    name: str
    """Safe identifier of the experiment (used in job names)."""
    description: str = ""
    """Free text shown by `hpcxlt plan`."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The pretrained encoder."""
    data: DataConfig = field(default_factory=DataConfig)
    """Where data comes from."""
    arms: tuple[ArmConfig, ...]
    """Intermediate arms; include one named 'none' for the no-intermediate baseline."""
    targets: TargetsConfig
    """Target tasks and evaluation languages."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """Random seeds; every arm x target is run once per seed."""
    intermediate: TrainConfig = field(default_factory=TrainConfig)
    """Hyperparameters of intermediate training."""
    target: TrainConfig = field(default_factory=TrainConfig)
    """Hyperparameters of target-task training (per-task overrides in targets.overrides)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Zero-shot evaluation settings."""
    stats: StatsConfig = field(default_factory=StatsConfig)
    """Significance tests of the aggregate tables."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Experiment trackers (TensorBoard always; W&B optional)."""
    cost: CostConfig = field(default_factory=CostConfig)
    """Figures for the GPU-hour estimate."""

    def check(self, path: str = "") -> None:
        prefix = f"{path}." if path else ""
        check_name(self.name, f"{prefix}name")
        self.model.check(f"{prefix}model")
        self.data.check(f"{prefix}data")
        if not self.arms:
            raise ConfigError(f"{prefix}arms: must list at least one arm (e.g. the '{BASELINE_ARM}' baseline)")
        names = [arm.name for arm in self.arms]
        for index, arm in enumerate(self.arms):
            arm.check(f"{prefix}arms[{index}]")
            if names.count(arm.name) > 1:
                raise ConfigError(f"{prefix}arms[{index}].name: arm {arm.name!r} is defined twice")
            if arm.compare_to is not None and arm.compare_to not in names:
                raise ConfigError(
                    f"{prefix}arms[{index}].compare_to: {arm.compare_to!r} is not an arm; arms are {names}"
                )
            if arm.compare_to == arm.name:
                raise ConfigError(f"{prefix}arms[{index}].compare_to: an arm cannot be compared to itself")
            if arm.control is not None and arm.control not in names:
                raise ConfigError(f"{prefix}arms[{index}].control: {arm.control!r} is not an arm; arms are {names}")
            if arm.control == arm.name:
                raise ConfigError(f"{prefix}arms[{index}].control: an arm cannot be its own control")
        self.targets.check(f"{prefix}targets")
        if not self.seeds:
            raise ConfigError(f"{prefix}seeds: must list at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{prefix}seeds: lists a seed twice: {list(self.seeds)}")
        for seed in self.seeds:
            if seed < 0:
                raise ConfigError(f"{prefix}seeds: seeds must be >= 0, got {seed}")
        self.intermediate.check(f"{prefix}intermediate")
        self.target.check(f"{prefix}target")
        self.eval.check(f"{prefix}eval")
        self.stats.check(f"{prefix}stats")
        self.tracking.check(f"{prefix}tracking")
        self.cost.check(f"{prefix}cost")

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)
