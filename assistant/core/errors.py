"""Errors a user can read: each carries one sentence for the screen and an exit code for the CLI."""

from __future__ import annotations


class PenwrightError(Exception):
    """Base error; ``str(error)`` is a sentence a writer understands."""

    exit_code = 1


class InputError(PenwrightError):
    """The text or file the user gave cannot be used (empty, binary, too large, bad encoding)."""

    exit_code = 2


class ModelError(PenwrightError):
    """The model cannot be found, read, or run (missing, corrupt, unsupported, out of memory)."""

    exit_code = 3
