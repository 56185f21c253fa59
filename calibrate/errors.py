"""Errors the CLI reports as one line with exit code 2."""


class UsageError(Exception):
    """Bad input or configuration: printed as one line, exit 2."""
