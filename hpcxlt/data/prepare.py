"""`hpcxlt prepare`: everything a plan reads, fetched once on a login node, validated, and written as a
local data folder that offline compute nodes read with `data.source: local`.

What a plan reads (`plan_needs`), per cell kind, exactly as the jobs read it:
- an intermediate arm: the train split of each of its tasks in each of its languages; the dev split of
  the language its training evaluates on (`grid.plan.dev_splits`: none for a task without a dev split there) when `eval_every` is set;
- a target (and its preludes): the English train split, the English dev split when `eval_every` is set;
- an evaluation: every configured eval split of every evaluated language that the task has; LAReQA's
  candidate pool covers all its languages; Mewsli-X's shared entity pool.

Each split is loaded from the config's source (hub, hub mirror or local files), validated (columns,
labels within the registry's names, QA answers at their `answer_start`, unique ids, nothing empty),
then written as `DIR/<task>/<lang>/<split>.parquet` (types and label names kept) with
`DIR/manifest.json` recording the source, row counts and content fingerprints. Every problem of every
split is reported at once, and nothing is written unless all of them pass. A split whose manifest
entry has the same source and whose file still has its fingerprint is not fetched again.
With `features=True`, the tokenized features the jobs will ask for are put in `data.cache_dir` too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcxlt.config import ExperimentConfig, arm_train_config, target_train_config
from hpcxlt.config.schema import DataConfig
from hpcxlt.data import schemas
from hpcxlt.data.cache import quiet_datasets
from hpcxlt.data.features import TAG_SET_FILE, load_candidate_features, load_features
from hpcxlt.data.featurize import input_limit
from hpcxlt.data.hub import describe, hub_ref, hub_unreachable
from hpcxlt.data.load import load_candidates, load_uncapped
from hpcxlt.data.local import (
    CANDIDATES_STEM,
    MANIFEST,
    data_root,
    file_fingerprint,
    local_candidates_file,
    local_file,
)
from hpcxlt.data.release import downloads_allowed
from hpcxlt.grid.plan import arm_languages, dev_splits, eval_languages
from hpcxlt.io import make_temp_dir, read_json, write_json_atomic
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import TaskSpec

CANDIDATES = "candidates"
"""The `split` of a Need that stands for a task's shared candidate pool (Mewsli-X)."""
MAX_PROBLEMS = 5
"""Problems listed per split (the count of all of them is given too)."""


@dataclass(frozen=True, order=True)
class Need:
    """One (task, language, split) a plan reads; split 'candidates' is the task's shared pool."""

    task: str
    lang: str
    split: str

    @property
    def name(self) -> str:
        return f"{self.task}/{self.lang}/{self.split}"


def plan_needs(cfg: ExperimentConfig) -> list[Need]:
    """Every split the plan's cells read (module docstring), sorted, each once."""
    needs: set[Need] = set()
    for arm in cfg.arms:
        if arm.is_baseline:
            continue
        train = arm_train_config(cfg, arm)
        languages = arm_languages(cfg, arm.name)
        for task, langs in languages.items():
            needs.update(Need(task, lang, "train") for lang in langs)
        if train.eval_every:
            needs.update(Need(task, lang, "dev") for task, lang in dev_splits(languages).items())
    for task in cfg.targets.tasks:
        spec = get_task(task)
        train = target_train_config(cfg, task)
        for trained in (*cfg.targets.preludes.get(task, ()), task):
            if get_task(trained).has_training_data():
                needs.add(Need(trained, "en", "train"))
                if train.eval_every and dev_splits({trained: ("en",)}):
                    needs.add(Need(trained, "en", "dev"))
        for split in cfg.eval.splits:
            langs = eval_languages(cfg, task)
            if schemas.RETRIEVAL_POOLS.get(spec.schema) == "all_languages":
                langs = spec.languages  # every language's sentences are candidates (LAReQA)
            needs.update(Need(task, lang, split) for lang in langs if spec.has_split(lang, split))
        if spec.candidates is not None:
            needs.add(Need(task, "*", CANDIDATES))
    return sorted(needs)


# -- validation ------------------------------------------------------------------------------------


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def row_problems(spec: TaskSpec, row: dict, split: str) -> list[str]:
    """What is wrong with one row of `spec`'s schema (empty when nothing)."""
    problems = []
    try:
        if spec.format == "classification":
            text, pair, _ = schemas.classification_fields(spec, row)
            if not _text(text) or (spec.columns.get("text_pair") and not _text(pair)):
                problems.append("empty text")
        elif spec.format == "multiple_choice":
            first, choices, _ = schemas.choice_fields(spec, row)
            if not _text(first) or not all(_text(c) for c in choices):
                problems.append("empty context or choice")
        elif spec.format == "tagging":
            words, ids = schemas.tagging_fields(spec, row, spec.label_names)
            if not words or not all(_text(w) for w in words):
                problems.append("empty sentence or token")
            if spec.label_names and schemas.IGNORE in ids:
                tags = row[spec.columns["tags"]]
                unknown = sorted({str(tags[i]) for i, v in enumerate(ids) if v == schemas.IGNORE})
                problems.append(f"tags {unknown} are not among {list(spec.label_names)}")
        elif spec.schema in ("squad", "lareqa"):
            answers = row["answers"]
            if not _text(row["context"]) or not _text(row["question"]):
                problems.append("empty context or question")
            if split == "train" and not answers["text"]:
                problems.append("a training question without an answer")
            for text, start in zip(answers["text"], answers["answer_start"]):
                found = row["context"][start : start + len(text)]
                if found != text:
                    problems.append(f"answer {text!r} is not at answer_start {start} (the context has {found!r} there)")
        elif spec.schema == "tatoeba":
            if not _text(row["source_sentence"]) or not _text(row["target_sentence"]):
                problems.append("empty sentence")
        elif spec.schema == "mewslix":
            if not _text(row.get("mention")) or not (_text(row.get("entity_id")) or _text(row.get("entity"))):
                problems.append("empty mention or gold entity")
    except (ValueError, KeyError, TypeError, IndexError) as err:
        problems.append(f"{type(err).__name__}: {err}")
    return problems


def validate(spec: TaskSpec, dataset, need: Need) -> list[str]:
    """Problems of one loaded split, each naming the row (1-based) and what is wrong."""
    if len(dataset) == 0:
        return ["holds no rows"]
    if need.split == CANDIDATES:
        missing = [c for c in ("entity_id", "description") if c not in dataset.column_names]
        return [f"missing column(s) {missing} of the candidate pool"] if missing else []
    problems: list[str] = []
    count = 0
    seen: dict[str, int] = {}
    has_id = "id" in dataset.column_names
    for number, row in enumerate(dataset, 1):
        found = row_problems(spec, row, need.split)
        if has_id:
            if row["id"] in seen:
                found.append(f"id {row['id']!r} repeats row {seen[row['id']]}")
            seen.setdefault(row["id"], number)
        count += len(found)
        problems.extend(f"row {number}: {p}" for p in found[: max(0, MAX_PROBLEMS - len(problems))])
    if count > len(problems):
        problems.append(f"... {count} problems in all")
    return problems


# -- sources and manifest ---------------------------------------------------------------------------


def source_of(spec: TaskSpec, need: Need, data_cfg: DataConfig) -> str:
    """What identifies where a split comes from: the hub location(s), or the local file's content."""
    if data_cfg.source == "local":
        path = (
            local_candidates_file(spec, data_cfg)
            if need.split == CANDIDATES
            else local_file(spec, need.lang, need.split, data_cfg)
        )
        return f"local:{path.name}:{file_fingerprint(path)}"
    ref = spec.candidates if need.split == CANDIDATES else hub_ref(spec, need.lang, need.split)
    if ref is None:  # plan_needs asks for candidates only of tasks that have a pool
        raise ValueError(f"task {spec.name!r} has no shared candidate pool")
    parts = [describe(ref)] + [describe(extra) for extra in ref.concat]
    return "hub:" + " + ".join(parts) + (f" ids {ref.id_prefix}*" if ref.id_prefix else "")


def output_path(root: Path, need: Need) -> Path:
    if need.split == CANDIDATES:
        return root / need.task / f"{CANDIDATES_STEM}.parquet"
    return root / need.task / need.lang / f"{need.split}.parquet"


def _load(spec: TaskSpec, need: Need, data_cfg: DataConfig):

    if need.split == CANDIDATES:
        return load_candidates(spec, data_cfg)
    return load_uncapped(spec, need.lang, need.split, data_cfg)


@dataclass
class PrepareReport:
    """What `prepare` did: per need 'fetched', 'unchanged' or 'failed' (with its problems)."""

    out: str
    fetched: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    features: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"ok": self.ok}


def _up_to_date(manifest: dict, need: Need, source: str, root: Path) -> bool:
    entry = manifest.get("entries", {}).get(need.name)
    path = output_path(root, need)
    return (
        bool(entry) and entry["source"] == source and path.is_file() and file_fingerprint(path) == entry["fingerprint"]
    )


def _known_current(manifest: dict, need: Need, data_cfg: DataConfig, root: Path) -> bool:
    """True when the prepared copy of `need` is known to be up to date (nothing to fetch for it)."""
    try:
        return _up_to_date(manifest, need, source_of(get_task(need.task), need, data_cfg), root)
    except Exception:  # a split the source lacks is reported by the loop, with the others
        return False


class HubUnreachableError(RuntimeError):
    """The hub is needed and cannot be reached: said once, before anything is fetched."""


def prepare(
    cfg: ExperimentConfig,
    out: str | os.PathLike,
    *,
    features: bool = False,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> PrepareReport:
    """Fetch, validate and write every split `cfg`'s plan reads into `out` (module docstring)."""
    started = time.perf_counter()
    root = Path(out).expanduser()
    report = PrepareReport(out=str(root))
    manifest_path = root / MANIFEST
    manifest = read_json(manifest_path) if manifest_path.is_file() else {"entries": {}}
    if cfg.data.source == "hub" and not cfg.data.hub_mirror:
        stale = [n for n in plan_needs(cfg) if not _known_current(manifest, n, cfg.data, root)]
        why = hub_unreachable() if stale else None
        if why:
            raise HubUnreachableError(
                f"the Hugging Face hub cannot be reached from this machine ({why}); {len(stale)} split(s) need it and "
                f"nothing was fetched or written. Run `hpcxlt prepare` where the hub is reachable (a login node), or "
                "point data.hub_mirror at a folder of hub snapshots (docs/data.md, 'A hub mirror'), or use "
                "data.source: local with your own release files (docs/data.md, 'Bringing your own copies')"
            )
    staged: dict[Need, tuple[Path, dict]] = {}
    root.parent.mkdir(parents=True, exist_ok=True)
    created = not root.exists()
    root.mkdir(exist_ok=True)
    staging = make_temp_dir(root, prefix=".prepare-")
    try:
        for need in progress(plan_needs(cfg)):
            spec = get_task(need.task)
            try:
                source = source_of(spec, need, cfg.data)
                if _up_to_date(manifest, need, source, root):
                    report.unchanged.append(need.name)
                    report.rows[need.name] = manifest["entries"][need.name]["rows"]
                    continue
                with downloads_allowed():  # official release files are fetched here, never by a job
                    dataset = _load(spec, need, cfg.data)
                problems = validate(spec, dataset, need)
            except Exception as err:  # a missing source is reported with the rest, not raised alone
                problems = [f"{type(err).__name__}: {err}"]
            if problems:
                report.failed[need.name] = problems
                continue
            path = output_path(staging, need)
            path.parent.mkdir(parents=True, exist_ok=True)
            with quiet_datasets():
                dataset.to_parquet(str(path))
            staged[need] = (path, {"source": source, "rows": len(dataset), "fingerprint": file_fingerprint(path)})
            report.rows[need.name] = len(dataset)
        if report.failed:
            return report
        _publish(cfg, root, staging, staged, manifest)
        report.fetched = [need.name for need in staged]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not report.ok and not any(root.iterdir()):
            root.rmdir()
        report.seconds = round(time.perf_counter() - started, 3)
    if features:
        report.features = prepare_features(cfg, root)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _publish(cfg: ExperimentConfig, root: Path, staging: Path, staged: dict, manifest: dict) -> None:
    """Move every staged file into place, copy release tag maps, then write the manifest (last)."""
    for need, (path, entry) in staged.items():
        final = output_path(root, need)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)
        manifest.setdefault("entries", {})[need.name] = entry
    if cfg.data.source == "local":  # a fixed tag map shipped with the data (CCG) travels with it
        for task in {need.task for need in staged}:
            tags = data_root(cfg.data) / task / TAG_SET_FILE
            if tags.is_file():
                shutil.copyfile(tags, root / task / TAG_SET_FILE)
    manifest["updated"] = time.time()
    manifest["data"] = {"source": cfg.data.source, "root": cfg.data.root, "hub_mirror": cfg.data.hub_mirror}
    write_json_atomic(root / MANIFEST, manifest)


def prepared_config(cfg: ExperimentConfig, out: str | os.PathLike) -> ExperimentConfig:
    """`cfg` reading the prepared folder (what compute jobs run with)."""
    data = dataclasses.replace(cfg.data, source="local", root=str(Path(out).expanduser()), hub_mirror=None)
    return dataclasses.replace(cfg, data=data)


def prepare_features(cfg: ExperimentConfig, out: str | os.PathLike) -> int:
    """Tokenize every prepared split with the plan's tokenizer and settings into data.cache_dir, as the
    jobs will ask for it; returns how many feature sets were built or found."""
    from transformers import AutoConfig, AutoTokenizer  # heavy: transformers

    local = prepared_config(cfg, out)
    revision = {"revision": cfg.model.revision} if cfg.model.revision else {}
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path, **revision)
    model_config = AutoConfig.from_pretrained(cfg.model.name_or_path, **revision)
    count = 0
    for spec, lang, split, train, max_length, doc_stride in feature_requests(cfg):
        if split == CANDIDATES:
            load_candidate_features(spec, tokenizer, local.data, max_length=max_length)
        else:
            if spec.format == "tagging" and not train:
                max_length = input_limit(model_config, tokenizer)
            load_features(
                spec, lang, split, tokenizer, local.data, max_length=max_length, doc_stride=doc_stride, train=train
            )
        count += 1
    return count


def feature_requests(cfg: ExperimentConfig) -> list[tuple[TaskSpec, str, str, bool, int, int]]:
    """(spec, lang, split, train mode, max_length, doc_stride) of every feature set the jobs load."""
    requests: set[tuple[str, str, str, bool, int, int]] = set()
    for arm in cfg.arms:
        if arm.is_baseline:
            continue
        train = arm_train_config(cfg, arm)
        languages = arm_languages(cfg, arm.name)
        for task, langs in languages.items():
            requests.update((task, lang, "train", True, train.max_length, train.doc_stride) for lang in langs)
        if train.eval_every:
            requests.update(
                (task, lang, "dev", True, train.max_length, train.doc_stride)
                for task, lang in dev_splits(languages).items()
            )
    needs = set(plan_needs(cfg))
    for task in cfg.targets.tasks:
        train = target_train_config(cfg, task)
        for trained in (*cfg.targets.preludes.get(task, ()), task):
            for split in ("train", "dev"):
                if Need(trained, "en", split) in needs and (split == "train" or train.eval_every):
                    requests.add((trained, "en", split, True, train.max_length, train.doc_stride))
        for need in (n for n in needs if n.task == task and n.split not in ("train", CANDIDATES)):
            requests.add((task, need.lang, need.split, False, train.max_length, train.doc_stride))
        if Need(task, "*", CANDIDATES) in needs:
            requests.add((task, "*", CANDIDATES, False, train.max_length, train.doc_stride))
    return [
        (get_task(task), lang, split, train, length, stride)
        for task, lang, split, train, length, stride in sorted(requests)
    ]


__all__ = [
    "CANDIDATES",
    "MANIFEST",
    "Need",
    "PrepareReport",
    "plan_needs",
    "prepare",
    "prepare_features",
    "prepared_config",
    "row_problems",
    "validate",
]
