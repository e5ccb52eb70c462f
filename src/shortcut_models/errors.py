"""Exceptions the command line turns into one line on stderr."""


class UserError(Exception):
    """Bad input from the user (unknown preset or key, missing file...): exit code 2, no traceback."""


class RunError(RuntimeError):
    """Work that could not be completed (a full disk, samples that came out NaN): exit code 1, one line."""


class WriteFailed(RunError):
    """A file could not be written (disk full, file-size limit, permissions); partial output is removed."""


class TrainingDiverged(RunError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is left as it was."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when empty), at most ``limit`` characters."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
