"""The error a user can fix (a bad key, a missing file): CLIs print it as one line and exit 2 (core.cli)."""


class UserError(Exception):
    """A problem the user can fix; CLIs print it as one line and exit 2."""
