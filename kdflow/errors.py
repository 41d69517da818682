"""Errors that kdflow expects and reports as one clear message (no traceback, non-zero exit)."""


class KdflowError(Exception):
    """A failure the user can act on: bad input, a failed check, a refused registry action."""
