"""The small JSON files robench keeps beside its artifacts (a member's ``card.json``, a
training run's ``checkpoint.json``), read defensively.

Such a file may be truncated, replaced or hand-edited: reading it never raises anything
but a one-line :class:`~robench.errors.UserError` naming the file and what to do, and
never reads more than :data:`MAX_BYTES` (a card or a checkpoint of a long run is far
smaller) nor anything but a regular file (:func:`robench.io.read_bounded`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robench.errors import UserError
from robench.io import read_bounded

MAX_BYTES = 16 * 2**20


def read_json_object(path: Path, remedy: str) -> dict[str, Any]:
    """The JSON object stored in ``path``; a UserError ending in ``remedy`` when the file
    is not a regular file, too large, not UTF-8, not JSON (or nested too deep to parse) or
    not an object."""
    path = Path(path)
    data = read_bounded(path, MAX_BYTES, remedy)  # a FIFO or a device refused, never read
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        reason = "nested too deep" if isinstance(exc, RecursionError) else one_line(exc)
        raise UserError(f"{path} is corrupt (not JSON: {reason}); {remedy}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is corrupt (a JSON {json_kind(value)}, not an object); {remedy}")
    return value


def json_kind(value: Any) -> str:
    """The JSON name of ``value``'s type: object, array, string, number, boolean or null."""
    kinds = ((bool, "boolean"), (dict, "object"), (list, "array"), (str, "string"), ((int, float), "number"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "null")


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its first line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def shown(value: Any, limit: int = 60) -> str:
    """``value`` as compact one-line JSON, cut to ``limit`` characters (for messages)."""
    try:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=str)
    except (ValueError, RecursionError):  # an integer too long to print, or deep nesting
        return f"a {json_kind(value)} that cannot be shown"
    return text if len(text) <= limit else text[: limit - 3] + "..."
