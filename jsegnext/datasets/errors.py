"""Errors and warnings about the data (as opposed to the config)."""


class DataError(RuntimeError):
    """A sample that cannot be used: unreadable image, missing or inconsistent label.

    The message always names the offending file(s); ``path`` holds the main one.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class DataWarning(UserWarning):
    """A bad sample that was skipped (``skip_bad_samples=True``)."""
