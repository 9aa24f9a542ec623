"""One base class for every error a user can cause or fix: the CLI and the service catch it and print one line.

Each concrete error also derives from the built-in type it used to be (``ValueError``, ``RuntimeError``, ...), so
code that caught those keeps working.
"""

from __future__ import annotations


class MatryoshkaError(Exception):
    """Base of the errors whose message is meant for the user (bad input, missing files, corrupt data)."""


class InputError(MatryoshkaError, ValueError):
    """An argument or array the user passed is malformed (wrong shape, empty, out of range)."""
