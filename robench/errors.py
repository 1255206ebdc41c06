"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A bad value, a missing or corrupt file, an unknown name: the user can fix it.

    The message is one line that says what was wrong and what would be valid.
    """
