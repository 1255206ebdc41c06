"""One writer per zoo member: a second process waits for the first, then reuses the
member when it was trained as it would train it, and refuses it otherwise."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import robench.train.members as members
from robench.config import LossSpec, TrainSpec
from robench.errors import UserError
from robench.train.member_lock import member_lock
from robench.zoo import MemberDef

SPEC = TrainSpec(epochs=1, lr=0.003, batch_size=64, train_samples=128)
MEMBER = MemberDef(LossSpec("ce"), "linear", 0, "digits-cnn")

HOLDER = """
import sys, time
from pathlib import Path
from robench.train.member_lock import member_lock
with member_lock(Path(sys.argv[1])):
    Path(sys.argv[2]).write_text("held")
    time.sleep(float(sys.argv[3]))
"""


def _holding(folder, seconds: float) -> subprocess.Popen:
    """A process that holds ``folder``'s training lock for ``seconds``, once it has it."""
    held = folder.parent.parent.parent / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(held), str(seconds)])
    while not held.exists():
        assert holder.poll() is None
        time.sleep(0.02)
    return holder


def test_a_second_process_waits_for_the_member_and_the_lock_is_gone_after(tmp_path):
    folder = tmp_path / "zoo" / "digits" / "ce-s0"
    holder = _holding(folder, 1.5)
    start = time.monotonic()
    with member_lock(folder):
        waited = time.monotonic() - start
    assert waited > 1.0  # until the holder's 1.5 s with the lock were over
    assert holder.wait(timeout=60) == 0
    assert list(folder.parent.iterdir()) == []  # no lock file is left


def test_a_killed_holder_never_leaves_the_member_locked(tmp_path):
    folder = tmp_path / "zoo" / "digits" / "ce-s0"
    holder = _holding(folder, 60)
    holder.kill()
    holder.wait()
    with member_lock(folder):  # the kernel released the killed process's lock
        pass


def test_a_member_trained_with_another_precision_is_refused_not_overwritten(digits, tmp_path, monkeypatch):
    folder = tmp_path / "zoo" / "digits" / MEMBER.name
    card = members.train_member(digits, MEMBER, SPEC, folder)
    weights = (folder / "weights.safetensors").read_bytes()
    assert members.train_member(digits, MEMBER, SPEC, folder) == card  # the same settings: reused
    monkeypatch.setattr(members, "resolve_precision", lambda *args: "bf16")
    with pytest.raises(UserError, match='trained with a different precision \\(precision "fp32" there, "bf16" here\\)'):
        members.train_member(digits, MEMBER, SPEC, folder)
    assert (folder / "weights.safetensors").read_bytes() == weights
