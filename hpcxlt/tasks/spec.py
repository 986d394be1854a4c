"""What the project knows about one task: format, languages, metric, where its data lives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FORMATS = ("classification", "multiple_choice", "tagging", "qa", "retrieval")
METRICS = ("accuracy", "seqeval_f1", "squad", "mlqa", "map_at_20")
CATEGORIES = ("classification", "structured_prediction", "qa", "retrieval")
ROLES = ("target", "intermediate")
PARALLEL_KEYS = ("position", "id")
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True, kw_only=True)
class DataRef:
    """Where one split of one language of a task lives on the Hugging Face hub."""

    hf_id: str
    """Hub data set id, e.g. 'google/xtreme'."""
    config: str | None = None
    """Hub config name for this language, e.g. 'PAN-X.de' (None when the data set has none)."""
    split: str = "train"
    """Hub split name, e.g. 'validation' ('+' joins splits of the same config, as `datasets` allows: 'train_r1+train_r2')."""
    revision: str | None = None
    """Hub revision to read, e.g. 'refs/convert/parquet' for repositories that only ship a loading script
    (`datasets` >= 4 runs no scripts; the hub's automatic parquet conversion has the same configs/splits)."""
    rename: Mapping[str, str] = field(default_factory=dict)
    """Hub column -> schema column, for copies that name columns differently (e.g. mteb Tatoeba 'sentence1' -> 'source_sentence')."""
    id_prefix: str | None = None
    """Keep only rows whose 'id' starts with this (TyDiQA-GoldP mixes all languages in one config; ids start e.g. 'swahili-')."""
    url: str | None = None
    """An official release file outside the hub (LAReQA's XQuAD-R JSON): fetched only by `hpcxlt prepare`, never by a job."""
    sha256: str | None = None
    """The SHA-256 the file at `url` must have (its content pinned; a changed or corrupted download is refused)."""
    concat: tuple[DataRef, ...] = ()
    """More hub sources whose rows are appended after this one's, in the same schema (ANLI+ = ANLI r1-r3 + MNLI + SNLI)."""


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One task of the registry (target task of XTREME-R, or an intermediate task)."""

    name: str
    """Registry name and safe identifier, e.g. 'xnli', 'anli+', 'masakhaner2'."""
    role: str
    """'target' (an XTREME-R task) or 'intermediate'."""
    format: str
    """One of FORMATS: how examples become model inputs and which head is used."""
    metric: str
    """One of METRICS: how predictions are scored."""
    category: str | None
    """XTREME-R category for target tasks (one of CATEGORIES), None for intermediate tasks."""
    languages: tuple[str, ...]
    """Evaluation languages (ISO 639-1 where one exists, else ISO 639-3)."""
    train_languages: tuple[str, ...]
    """Languages with training data ('en' only for XTREME-R targets; empty when the task has no training data, e.g. tatoeba)."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """Role -> column name in the real data set's schema (e.g. {'text': 'premise', 'text_pair': 'hypothesis', 'label': 'label'})."""
    label_names: tuple[str, ...] = ()
    """Class / tag names in label-id order (empty for QA and retrieval)."""
    schema: str = ""
    """Name of the row schema the data follows (e.g. 'squad', 'copa', 'hellaswag'); data adapters dispatch on it."""
    data: Mapping[str, Mapping[str, DataRef]] = field(default_factory=dict)
    """split ('train'/'dev'/'test') -> language -> hub location."""
    source: str = ""
    """Where the facts above come from (paper / data set card)."""
    candidates: DataRef | None = None
    """Retrieval pool shared by all languages (Mewsli-X candidate entities); None when rows carry their own candidates."""
    parallel_key: str | None = None
    """One test set translated into every language: how an example is found in the others ('position': row i;
    'id': the question id); None when each language has its own test set. The bootstrap draws such examples together."""

    def has_training_data(self) -> bool:
        """True when the task can be fine-tuned on (English) training data."""
        return bool(self.train_languages)

    def split_languages(self) -> dict[str, tuple[str, ...]]:
        """split -> the languages that have it: the registry's hub locations; a task whose data exists only as
        local files (CCGbank: LDC-licensed, no hub copy) has a train and a dev split in its training
        languages, as its release has (CCGbank's sections 02-21 and 00)."""
        if self.data:
            return {split: tuple(refs) for split, refs in self.data.items()}
        return {"train": self.train_languages, "dev": self.train_languages}

    def has_split(self, lang: str, split: str) -> bool:
        """True when the task has `split` in `lang` (e.g. udpos has English dev data only, tydiqa_lowres no dev
        at all: TyDiQA-GoldP's dev set is XTREME's TyDiQA test)."""
        return lang in self.split_languages().get(split, ())
