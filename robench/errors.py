"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A bad value, a missing or corrupt file, an unknown name: the user can fix it.

    The message is one line that says what was wrong and what would be valid.
    """


class DiskFull(UserError):
    """A write that found no space (ENOSPC, a disk quota, SQLite's ``database or disk is
    full``). What was being written was dropped whole: the previous file, or the store
    as of its last committed batch, is intact, so the same command resumes once there
    is space."""

    def __init__(self, target: object) -> None:
        super().__init__(f"no space left on the device writing {target}; the previous version is intact: "
                         "free some space and run the same command again to resume")
