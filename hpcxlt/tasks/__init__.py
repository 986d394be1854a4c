"""Task registry: what each task is (TaskSpec), its languages and where its data lives."""

from hpcxlt.tasks.languages import (
    LANGUAGES,
    LOW_RESOURCE_MAX_CLASS,
    Language,
    UnknownLanguageError,
    language,
    resource_group,
)
from hpcxlt.tasks.registry import (
    TASKS,
    UnknownTaskError,
    get_task,
    intermediate_tasks,
    target_tasks,
)
from hpcxlt.tasks.spec import DataRef, TaskSpec

__all__ = [
    "LANGUAGES",
    "LOW_RESOURCE_MAX_CLASS",
    "Language",
    "UnknownLanguageError",
    "language",
    "resource_group",
    "TASKS",
    "UnknownTaskError",
    "get_task",
    "intermediate_tasks",
    "target_tasks",
    "DataRef",
    "TaskSpec",
]
