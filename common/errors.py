"""Errors a run reports to the user as "the data failed validation" (exit code 2)."""


class DataValidationError(RuntimeError):
    """The data cannot be trained on; the message says why in plain words."""
