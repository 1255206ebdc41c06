"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2."""


class UserError(Exception):
    """A bad value, a missing or corrupt file, an unknown name: the user can fix it.

    The message is one line that says what was wrong and what would be valid.
    """


class DiskFull(UserError):
    """A write that found no space (ENOSPC, a disk quota, SQLite's ``database or disk is
    full``). What was being written was dropped whole: the previous file, or the store
    as of its last committed batch, is intact, so the same command resumes once there
    is space. ``intact=False`` for a write robench does not make atomically (a
    download, say), where that cannot be promised."""

    def __init__(self, target: object, intact: bool = True) -> None:
        kept = "the previous version is intact: " if intact else ""  # a write of robench's own, never torn
        super().__init__(f"no space left on the device writing {target}; {kept}free some space and run the same "
                         "command again to resume")
