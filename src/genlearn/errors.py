"""The one exception type for user mistakes.

The command line turns a `UserError` into a single `error: ...` line and exit status 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix: a bad name, value, path or file."""


class TrainingError(Exception):
    """Training cannot go on (a NaN or Inf loss); the last good checkpoint is kept."""
