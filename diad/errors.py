"""User-facing errors: one line that names the thing and what was expected."""


class DiadError(Exception):
    """Bad input from a user (path, file, value). The CLIs print it as one line, no traceback."""
