"""The run directory's one error type."""


class RunDirError(Exception):
    """The run directory cannot be used as asked (e.g. it holds a different experiment)."""
