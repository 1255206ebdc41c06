"""``robench run`` end to end on digits (slow: the whole quick pipeline)."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs).get("src", ""))


@pytest.mark.slow
def test_run_produces_the_digits_report_and_resumes(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "digits.toml").write_text((REPO / "zoo" / "digits.toml").read_text())
    command = [sys.executable, "-m", "robench.cli", "run"]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert first.returncode == 0, first.stderr[-2000:]
    index = tmp_path / "reports" / "digits" / "index.html"
    assert first.stdout.strip().endswith(f"report: {Path('reports') / 'digits' / 'index.html'}")
    parser = _Images()
    parser.feed(index.read_text())
    assert parser.sources and all(s.startswith("data:image") for s in parser.sources)
    results = tmp_path / "reports" / "digits" / "results"
    for name in ("attacks.csv", "experiments.csv", "flags.csv", "runs.csv"):  # the store's CSV exports
        assert (results / name).stat().st_size > 0, name
    before = (results / "attacks.csv").read_text()
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert (results / "attacks.csv").read_text() == before  # nothing recomputed
