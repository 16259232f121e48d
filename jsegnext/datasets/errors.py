"""Errors and warnings about the data (as opposed to the config); defined in :mod:`jsegnext.errors`."""

from ..errors import DataError, DataWarning  # noqa: F401
