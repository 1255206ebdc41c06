"""A full disk: every write that finds no space exits 2 with one line, and leaves the
previous file, the store's committed records and the member's checkpoint as they were,
with no temporary behind; once there is space, the same command finishes.

Two ways to fill a disk: a real one, a 16 MiB tmpfs filled to the last block (it needs
the right to mount, so it runs as root and is skipped otherwise), and an injected one
that makes Python's file writes and matplotlib's ``savefig`` write half of their bytes
and then fail with ENOSPC, as a full device does (it runs everywhere). SQLite's own
``database or disk is full`` comes from the tmpfs, or from ``PRAGMA max_page_count``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
from pathlib import Path

import matplotlib.figure
import pytest

from factories import attack_record, store_in_runs
from robench.cli import main
from robench.errors import DiskFull
from robench.store import AttackRecord, ResultStore

MESSAGE = "no space left on the device writing"


# ------------------------------------------------------------ two full disks


class RealDisk:
    """A 16 MiB tmpfs at ``root``; :meth:`fill` takes every free block, :meth:`free` gives them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


class InjectedDisk:
    """Python's ``Path.write_bytes`` / ``write_text`` and matplotlib's ``savefig`` fail
    with ENOSPC after writing half of their bytes, once :meth:`fill` is called."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.full = False
        originals = {name: getattr(pathlib.Path, name) for name in ("write_bytes", "write_text")}
        savefig = matplotlib.figure.Figure.savefig

        def half_then_full(name):
            def write(path, data, *args, **kwargs):
                if not self.full:
                    return originals[name](path, data, *args, **kwargs)
                originals[name](path, data[: len(data) // 2], *args, **kwargs)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write

        def savefig_then_full(figure, target, *args, **kwargs):
            savefig(figure, target, *args, **kwargs)
            if self.full:
                Path(target).write_bytes(Path(target).read_bytes()[:100])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        for name in originals:
            monkeypatch.setattr(pathlib.Path, name, half_then_full(name))
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig_then_full)

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request, tmp_path, monkeypatch):
    root = tmp_path / "disk"
    root.mkdir()
    if request.param == "injected":
        yield InjectedDisk(root, monkeypatch)
        return
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); the injected disk covers the same writes")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected disk covers it")
    yield RealDisk(root)
    subprocess.run(["umount", "-l", str(root)], check=False)


def _files(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (the filler of a real disk excluded)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "filler"}


def _one_line_disk_full(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and MESSAGE in lines[0] and "Traceback" not in err, err
    return lines[0]


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# ------------------------------------------------------------ the store


def _fill_store(store: ResultStore, count: int, first: int = 0) -> list[AttackRecord]:
    records = [attack_record(eps=round(0.001 * i, 6), defender=f"m{i % 7}", attacker=f"m{i % 7}")
               for i in range(first, first + count)]
    return store_in_runs(store, records)


def test_a_full_store_keeps_every_committed_batch(tmp_path):
    """SQLite's SQLITE_FULL (the file may not grow past max_page_count pages) rolls the
    batch back; the committed batches stay and the store takes the next batch once it may grow."""
    with ResultStore(tmp_path) as store:
        kept = _fill_store(store, 50)
        connection = store._connect(create=False)
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DiskFull, match=MESSAGE):
            _fill_store(store, 2000, first=50)
        assert store.records(AttackRecord) == kept
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        connection.execute(f"PRAGMA max_page_count = {pages * 100}")
        more = _fill_store(store, 2000, first=50)
        assert store.records(AttackRecord) == kept + more


def test_a_store_on_a_full_device_keeps_its_records(disk):
    if isinstance(disk, InjectedDisk):
        pytest.skip("SQLite writes with its own system calls; the max_page_count test covers the injected case")
    results = disk.root / "results"
    with ResultStore(results) as store:
        kept = _fill_store(store, 50)
    disk.fill()
    with ResultStore(results) as store:
        with pytest.raises(DiskFull, match=MESSAGE):
            _fill_store(store, 5000, first=50)
    disk.free()
    with ResultStore(results) as store:
        assert store.records(AttackRecord) == kept
        assert store._connect(create=False).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _temporaries(results) == []


# ------------------------------------------------------------ exports, reports, training


def test_an_export_to_a_full_device_keeps_the_previous_files(disk, tmp_path, capsys):
    results = tmp_path / "results"
    with ResultStore(results) as store:
        _fill_store(store, 200)
    out = disk.root / "export"
    assert main(["results", "export", "--results-dir", str(results), "--out", str(out)]) == 0
    before = _files(out)
    with ResultStore(results) as store:
        _fill_store(store, 3000, first=200)
    disk.fill()
    assert main(["results", "export", "--results-dir", str(results), "--out", str(out)]) == 2
    assert str(out) in _one_line_disk_full(capsys)
    assert _files(out) == before and _temporaries(out) == []
    disk.free()
    assert main(["results", "export", "--results-dir", str(results), "--out", str(out)]) == 0
    assert _files(out) != before


def test_a_report_on_a_full_device_keeps_the_previous_report(disk, digits_zoo, tmp_path, capsys):
    results, out = tmp_path / "results", disk.root / "report"
    attack = ["attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(digits_zoo), "--defenders",
              "ce-s0", "--eps", "0.1", "--num-samples", "20", "--results-dir", str(results)]
    assert main(attack) == 0
    report = ["report", "--dataset", "digits", "--zoo-dir", str(digits_zoo), "--results-dir", str(results),
              "--out", str(out), "--num-samples", "20"]
    assert main(report) == 0
    before = _files(out)
    assert main([*attack, "--eps", "0.2"]) == 0  # something new to report
    capsys.readouterr()
    disk.fill()
    assert main(report) == 2
    _one_line_disk_full(capsys)
    assert _files(out) == before and _temporaries(out) == []
    disk.free()
    assert main(report) == 0
    assert (out / "report.md").read_text() != ""


def test_training_on_a_full_device_keeps_its_checkpoint_and_resumes(disk, monkeypatch, capsys):
    from robench import presets
    from robench.train import trainer

    monkeypatch.setitem(presets._QUICK, "digits", (dict(lr=0.003), 3, 3))
    monkeypatch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)
    zoo = disk.root / "zoo"
    zoo.mkdir()
    (zoo / "digits.toml").write_text('architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n')
    command = ["train", "zoo", "--dataset", "digits", "--zoo-dir", str(zoo)]
    saves = {"count": 0}
    save_checkpoint = trainer.save_checkpoint

    def full_after_the_first_checkpoint(*args, **kwargs):
        saves["count"] += 1
        if saves["count"] == 2:
            disk.fill()
        save_checkpoint(*args, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", full_after_the_first_checkpoint)
    assert main(command) == 2
    _one_line_disk_full(capsys)
    partial = zoo / "digits" / "ce-s0" / ".partial"
    meta = json.loads((partial / "checkpoint.json").read_text())
    assert meta["epoch"] == 1  # the first epoch's checkpoint, whole
    assert not (zoo / "digits" / "ce-s0" / "card.json").exists()
    disk.free()
    monkeypatch.setattr(trainer, "save_checkpoint", save_checkpoint)
    assert main(command) == 0
    assert (zoo / "digits" / "ce-s0" / "card.json").exists() and not partial.exists()
    assert _temporaries(zoo) == []
