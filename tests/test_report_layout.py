"""The claims table fits a 1280-pixel browser window: measured by headless Chromium on a
page whose claims carry the longest texts the report writes (withheld claims naming
their flags, failed trainings left out, every reason with its detectable effect)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import pytest

from robench.report.build import claims_display
from robench.report.claims import FAMILIES
from robench.report.content import Page, Section, TableView
from robench.report.html import render_html
from robench.report.verdicts import evaluate_claims
from test_claims import _fixed, attack_frame, experiment_frames

WINDOW = 1280
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
MEASURE = ("<script>document.body.setAttribute('data-tables', JSON.stringify("
           "[...document.querySelectorAll('.tablewrap')].map(w => [w.scrollWidth, w.clientWidth, "
           "Math.ceil(w.getBoundingClientRect().right)])))</script>")


def _claims_page() -> str:
    """A report page holding the claims tables of a run with withheld claims and a failed training."""
    attacks = attack_frame(_fixed)
    experiments = experiment_frames(lambda e, c, s, r: 0.6 + 0.01 * math.cos(5 * r + len(c)))
    held = {f"{c}-s{s}": [f"gradient_free_not_stronger (worst/ce/native {c}-s{s} eps 0.1 (steps 50, queries 5000))"]
            for c in ("hinge-d1", "1toN-sym-d1") for s in (0, 1)}
    failed = {"ce-unit-s0": "clean accuracy 0.581 is 0.404 below the median 0.985 of ce-unit's 5 members"}
    frame = evaluate_claims(attacks, experiments, "digits", held, failed=failed)
    tables = [TableView(f"claims-{f}", f"{f} family", claims_display(frame[frame["family"] == f]), "")
              for f in FAMILIES]
    return render_html(Page("robench report: digits", ["a summary line"], [Section("claims", "Claims", tables=tables)]))


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser (chromium) on PATH: "
                                                "the layout check needs one (apt-get install chromium)")
def test_the_claims_tables_fit_a_1280_pixel_window(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(_claims_page().replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW},900",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    tables = json.loads(re.search(r'data-tables="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert len(tables) == len(FAMILIES)
    for scroll_width, client_width, right in tables:
        assert scroll_width <= client_width and right <= WINDOW, (scroll_width, client_width, right)


def test_the_claims_table_folds_its_long_texts():
    """Without a browser: the columns of free text wrap, and every other cell is short."""
    html = _claims_page()
    assert '<th class="wrap">statement</th>' in html and '<th class="wrap">reason</th>' in html
    cells = re.findall(r'<td(?: class="([^"]*)")?>([^<]*)</td>', html)
    assert max(len(text) for kind, text in cells if "wrap" not in (kind or "").split()) <= 24
