"""The leak check (tests/leak_check.py) turns one broken teardown into one failure that
names what leaked, instead of a cascade through every later test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from robench import settings

TESTS = Path(__file__).resolve().parent

BROKEN_SUITE = '''
    import pytest
    import torch

    import robench.train.members as members

    REAL_TRAIN_MODEL = members.train_model
    THREADS = torch.get_num_threads()


    def _reached(*args, **kwargs):
        raise AssertionError("training was reached")


    @pytest.fixture
    def broken_guard():
        """Patches a guard, then fails in its teardown before undoing it (what an undo that
        raises does to every patch after it)."""
        members.train_model = _reached
        yield
        raise AttributeError("an undo failed")


    def test_breaks_its_teardown(broken_guard):
        assert members.train_model is _reached


    @pytest.mark.parametrize("n", range(3))
    def test_later_test_trains(n):
        assert members.train_model is REAL_TRAIN_MODEL


    def test_leaves_threads_changed():
        torch.set_num_threads(THREADS + 1)


    def test_later_test_sees_the_threads_back():
        assert torch.get_num_threads() == THREADS
'''


def _run_suite(tmp_path: Path) -> dict[str, str]:
    """Run BROKEN_SUITE under the leak check in a fresh pytest process; test id -> outcome
    text (the failure messages of setup, call and teardown, "" for a pass)."""
    (tmp_path / "conftest.py").write_text("from leak_check import no_leaks  # noqa: F401\n")
    (tmp_path / "test_broken.py").write_text(textwrap.dedent(BROKEN_SUITE))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}  # the outer run's options
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={report}",
                    "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problems = [p.get("message", "") + (p.text or "") for p in case if p.tag in ("failure", "error")]
        outcomes[case.get("name")] = "\n".join(problems)
    return outcomes


def test_one_broken_teardown_is_one_failure_naming_what_leaked(tmp_path):
    outcomes = _run_suite(tmp_path)
    failed = {name: text for name, text in outcomes.items() if text}
    assert set(outcomes) == {"test_breaks_its_teardown", "test_later_test_trains[0]", "test_later_test_trains[1]",
                             "test_later_test_trains[2]", "test_leaves_threads_changed",
                             "test_later_test_sees_the_threads_back"}
    assert set(failed) == {"test_breaks_its_teardown", "test_leaves_threads_changed"}, failed
    assert "robench.train.members.train_model" in failed["test_breaks_its_teardown"]
    assert "threads:" in failed["test_leaves_threads_changed"]


def test_settings_snapshot_restores_every_switch(process_settings):
    before = settings.snapshot()
    torch.set_num_threads(before.threads + 1)
    torch.backends.cudnn.benchmark = not before.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = not before.cudnn_tf32
    torch.backends.cuda.matmul.allow_tf32 = not before.matmul_tf32
    torch.backends.cudnn.deterministic = not before.cudnn_deterministic
    torch.use_deterministic_algorithms(not before.deterministic_algorithms, warn_only=True)
    settings.device.set_default_precision("bf16" if before.default_precision != "bf16" else "fp32")
    settings.device.set_compile_training(not before.compile_training)
    changed = settings.differences(before, settings.snapshot())
    assert [line.split(":")[0] for line in changed] == [
        "threads", "deterministic_algorithms", "deterministic_warn_only", "cudnn_deterministic", "cudnn_benchmark",
        "cudnn_tf32", "matmul_tf32", "default_precision", "compile_training"]
    settings.restore(before)
    assert settings.snapshot() == before


def test_no_test_patches_torchs_switch_modules_through_monkeypatch():
    """torch.backends.* and torch.cuda.* serve their switches dynamically, which pytest's
    undo cannot be relied on to restore (docs/reliability.md): tests set them through
    the process_settings fixture instead."""
    pattern = re.compile(r"(monkeypatch|MonkeyPatch\(\)|\bmp|\bpatch)\s*\.\s*(setattr|delattr)\(\s*torch\.(backends|cuda)\b")
    offenders = [f"{path.name}:{number}" for path in sorted(TESTS.glob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_pytorchs_own_step_wrapper_is_no_leak():
    """The first optimizer of a class wraps the class's ``step`` (PyTorch's profiling hook):
    the check lets that stand, and still catches a test's own replacement of ``step``."""
    from leak_check import leaks_since, namespace_snapshot

    import robench.train.rmsprop_tf as rmsprop_tf

    class Fresh(rmsprop_tf.RMSPropTF):  # a class of robench's namespace whose step no optimizer has wrapped yet
        def step(self, closure=None):
            return super().step(closure)

    Fresh.__module__ = rmsprop_tf.__name__
    rmsprop_tf.Fresh = Fresh
    try:
        before = (settings.snapshot(), namespace_snapshot())
        Fresh([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        assert getattr(Fresh.step, "hooked", False)
        assert leaks_since(*before) == []
        Fresh.step = lambda self, closure=None: None
        assert leaks_since(*before) == ["robench.train.rmsprop_tf.Fresh.step"]
    finally:
        del rmsprop_tf.Fresh
