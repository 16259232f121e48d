"""What the command-line tools share: bad input becomes one line on stderr and an exit status.

    @one_line_errors
    def main(argv=None):
        ...

A :class:`~jsegnext.errors.JSegNeXtError` (config, data, checkpoint, diverged training) or an
``OSError`` (a file that cannot be read or written) is printed as ``error: <message>`` without a
traceback and ``main`` returns 1 (or the status given for that error class); anything else is a
bug and keeps its traceback. Warnings of jsegnext (a likely config typo, a skipped sample) are
printed as one ``warning: ...`` line.
"""

import functools
import sys
import warnings

from .errors import JSegNeXtError, JSegNeXtWarning


def _one_line_warnings(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, JSegNeXtWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def describe(err):
    """The message of an error the tools report: its text, or for an OSError what failed and where."""
    if isinstance(err, OSError) and not isinstance(err, JSegNeXtError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return str(err) or type(err).__name__


def one_line_errors(main=None, exit_codes=None):
    """Decorate a tool's ``main(argv)``; ``exit_codes`` maps error classes to exit statuses (default 1)."""

    def wrap(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            previous = warnings.showwarning
            warnings.showwarning = _one_line_warnings(previous)
            try:
                return func(*args, **kwargs)
            except (JSegNeXtError, OSError) as err:
                print(f"error: {describe(err)}", file=sys.stderr)
                return next((code for cls, code in (exit_codes or {}).items() if isinstance(err, cls)), 1)
            finally:
                warnings.showwarning = previous

        return wrapper

    return wrap(main) if main is not None else wrap
