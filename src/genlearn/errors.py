"""The one exception type for user mistakes.

The command line turns a `UserError` into a single `error: ...` line and exit status 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake the user can fix: a bad name, value, path or file."""


class Interrupted(Exception):
    """Training stopped on Ctrl-C or SIGTERM after writing a checkpoint at `step`."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at step {step}")
        self.step = step


class TrainingError(Exception):
    """Training cannot go on (a NaN or Inf loss); the last good checkpoint is kept."""
