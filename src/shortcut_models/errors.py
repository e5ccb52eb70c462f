"""Exceptions the command line turns into one line on stderr."""


class UserError(Exception):
    """Bad input from the user (unknown preset or key, missing file...): exit code 2, no traceback."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""
