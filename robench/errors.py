"""Errors a user can cause. The CLI turns each into one line on stderr and exit code 2
(:func:`one_line_message`), quoting at most :data:`QUOTE_LIMIT` characters of a bad value."""

import re


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


#: Characters of a bad value a message quotes: enough to recognise it, never a 100 kB paste.
QUOTE_LIMIT = 200
#: Characters of a whole error line; the longest real one (every member of a large zoo
#: listed as valid) is under half of it.
LINE_LIMIT = 4000


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters and saying how many
    characters the value has when cut."""
    text = repr(value)
    if len(text) <= limit:
        return text
    length = f" ({len(value):,} characters)" if isinstance(value, (str, bytes)) else ""
    return f"{text[:limit - 3]}...{length}"


def _escaped(match: re.Match) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


#: A run of non-blank characters longer than this is cut (a little over QUOTE_LIMIT, so a
#: value :func:`quoted` cut already, with its punctuation, is left as it is).
_RUN_LIMIT = QUOTE_LIMIT + 20


def _cut(match: re.Match) -> str:
    token = match.group()
    return f"{token[:QUOTE_LIMIT]}...({len(token) - QUOTE_LIMIT:,} more characters)"


def one_line_message(text: str) -> str:
    """``text`` as one printable line, whatever a value or a path put in it: control
    characters (a newline in a file name) escaped, each run of more than
    :data:`QUOTE_LIMIT` (and a little) non-blank characters cut to that many, the whole cut to
    :data:`LINE_LIMIT` characters. The command line writes every error through this."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", _escaped, text)
    text = re.sub(r"\S{%d,}" % (_RUN_LIMIT + 1), _cut, text)
    if len(text) > LINE_LIMIT:
        text = f"{text[: LINE_LIMIT // 2]} ...({len(text) - LINE_LIMIT:,} characters left out)... " \
               f"{text[-LINE_LIMIT // 2:]}"
    return text
