"""One base class for every error a user can cause or fix: the CLI and the service catch it and print one line.

Each concrete error also derives from the built-in type it used to be (``ValueError``, ``RuntimeError``, ...), so
code that caught those keeps working.
"""

from __future__ import annotations


class MatryoshkaError(Exception):
    """Base of the errors whose message is meant for the user (bad input, missing files, corrupt data).

    Example::

        from matryoshka import MatryoshkaError, load_config

        try:
            load_config("no_such_file.yaml")
        except MatryoshkaError as e:          # every error meant for the user: one line to print
            print(e)
    """


class InputError(MatryoshkaError, ValueError):
    """An argument or array the user passed is malformed (wrong shape, empty, out of range).

    Example::

        import numpy as np
        from matryoshka import InputError, truncate

        try:
            truncate(np.ones((2, 4)), 8)
        except InputError as e:               # also a ValueError
            print(e)
    """
