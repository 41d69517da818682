"""Errors that kdflow expects and reports as one clear message (no traceback, non-zero exit)."""


class KdflowError(Exception):
    """A failure the user can act on: bad input, a failed check, a refused registry action."""


class InvalidSetup(KdflowError, ValueError):
    """Settings that do not fit the data or each other (a model's kwargs for these inputs, an
    augmentation for another kind of data, a loss that needs what is not there). A ValueError
    too, so that callers that caught one before still do."""
