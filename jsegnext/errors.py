"""The errors jsegnext reports to its users.

Each is about something the user gave (a config, data, a checkpoint file) and its message names
it: the tools print the message as one line and exit non-zero (:mod:`jsegnext.cli`), without a
traceback. They keep their older built-in bases (``ValueError`` / ``RuntimeError``) so code that
caught those still works.
"""


class JSegNeXtError(Exception):
    """Base of every error caused by the user's input; the message says what and where."""


class ConfigError(JSegNeXtError, ValueError):
    """A config file, override or command-line value that cannot be used; names the key and why."""


class DataError(JSegNeXtError, RuntimeError):
    """A sample that cannot be used: unreadable image, missing or inconsistent label.

    The message always names the offending file(s); ``path`` holds the main one.
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = path


class CheckpointError(JSegNeXtError, RuntimeError):
    """A checkpoint or weight file that cannot be read, is refused, or does not fit the model."""


class DeployError(JSegNeXtError, ValueError):
    """A model that cannot be exported as asked, or an exported file that is missing or does not fit."""


class MissingDependencyError(JSegNeXtError, ImportError):
    """An optional package a feature needs is not installed; the message says what to install."""


class JSegNeXtWarning(UserWarning):
    """Base of jsegnext's warnings (the tools print them as one ``warning: ...`` line)."""


class ConfigWarning(JSegNeXtWarning):
    """A config name jsegnext does not use but that looks like one it does (a likely typo)."""


class DataWarning(JSegNeXtWarning):
    """A bad sample that was skipped (``skip_bad_samples=True``)."""
