"""The one exception type for problems a user can cause (bad table, bad flag, bad file)."""


class RxwganError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2."""
