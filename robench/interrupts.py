"""How a command ends when it is stopped: Ctrl-C (SIGINT) or a polite kill (SIGTERM).

Python turns SIGINT into KeyboardInterrupt wherever the program is; every write robench
makes is atomic and every store batch one transaction that an exception rolls back, so
unwinding from there leaves each file whole and the store as of its last committed batch.
:func:`sigterm_as_interrupt` makes SIGTERM unwind the same way (as :class:`Terminated`, a
KeyboardInterrupt), instead of killing the process where it stands with no word. The
command line turns either into one line and the shell's exit code (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwind as Ctrl-C does (stores roll back their open batch, atomic
    writes drop their temporary, the pipeline's worker pool is terminated)."""


#: Exit code of each interruption: 128 + the signal's number, what a shell reports.
EXIT_CODES = {Terminated: 128 + signal.SIGTERM, KeyboardInterrupt: 128 + signal.SIGINT}


def exit_code(interruption: KeyboardInterrupt) -> int:
    """143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_CODES[Terminated if isinstance(interruption, Terminated) else KeyboardInterrupt]


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not break off the unwinding
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread. Only where
    Python can run a handler (the main thread) and where SIGTERM is not ignored (a parent
    that ignores it for its children meant that); the previous handler is put back."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
