"""`PDGANError`: the base of every error pdgan raises on purpose, so `except PDGANError` catches them all.

The concrete classes keep their builtin base too (`CheckpointError` and `config.ConfigError` are also
ValueErrors, `BackendUnavailable` and `DownloadError` RuntimeErrors, `checkpoint.OutputPathError` an
OSError), so code that caught those keeps working. Messages are one line and say what to do.
The command-line tools exit with status 1 on any of them (2 is for a wrong command line).
"""
from __future__ import annotations


class PDGANError(Exception):
    """Something pdgan was asked to do cannot be done; the message says why and what to do."""
