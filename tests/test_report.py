"""Reports: tables, claims, figures, the HTML page and partial results, on a small fixed
set of synthetic records in a result store and a zoo of three untrained digits-cnn members."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from factories import attack_record, experiment_record, store_in_runs
from robench.errors import UserError
from robench.evaluate.evaluation import Evaluation
from robench.models import create_model
from robench.report import write_report
from robench.report.verdicts import INCONCLUSIVE, NOT_RUN
from robench.report.tables import fmt_eps
from robench.store import FlagRecord, ResultStore
from robench.zoo import list_members, save_member

DATASET = "digits"
N = 100
EPS = (0.0, 0.1, 0.2)
ATTACKS = ("fgsm", "ifgsm")
# name -> (loss, bound, delta, head, seed, clean accuracy)
MEMBERS = {
    "ce-s0": ("ce", "sym", 1.0, "linear", 0, 0.95),
    "hinge-d1-s0": ("hinge", "sym", 1.0, "linear", 0, 0.93),
    "1toN-zero-d1-s0": ("1toN", "zero", 1.0, "unit", 0, 0.94),
}
ATTACKERS = {"ce-s1": 1, "ce-s2": 2}
# accuracy drop per unit of ε: white-box per (member, attack); black-box per (attacker, member, attack)
WB_RATE = {("ce-s0", "fgsm"): 3.0, ("ce-s0", "ifgsm"): 4.0, ("hinge-d1-s0", "fgsm"): 2.0,
           ("hinge-d1-s0", "ifgsm"): 2.5, ("1toN-zero-d1-s0", "fgsm"): 2.5, ("1toN-zero-d1-s0", "ifgsm"): 3.0}
BB_RATE = {
    ("ce-s1", "ce-s0"): (2.0, 2.5), ("ce-s1", "hinge-d1-s0"): (3.0, 3.5), ("ce-s1", "1toN-zero-d1-s0"): (1.0, 1.5),
    ("ce-s2", "ce-s0"): (2.4, 3.0), ("ce-s2", "hinge-d1-s0"): (1.0, 1.2), ("ce-s2", "1toN-zero-d1-s0"): (1.2, 1.5),
}
# experiments: (setting -> member -> accuracy per repeat)
GEN = {0.1: {"ce-s0": (0.60, 0.55, 0.65), "hinge-d1-s0": (0.58, 0.60, 0.61), "1toN-zero-d1-s0": (0.65, 0.61, 0.69)},
       1.0: {"ce-s0": (0.95, 0.96, 0.94), "hinge-d1-s0": (0.94, 0.95, 0.95), "1toN-zero-d1-s0": (0.95, 0.95, 0.96)}}
NOISE = {0.0: {"ce-s0": (0.95, 0.96, 0.94), "hinge-d1-s0": (0.93, 0.92, 0.94), "1toN-zero-d1-s0": (0.96, 0.95, 0.95)},
         0.8: {"ce-s0": (0.50, 0.45, 0.55), "hinge-d1-s0": (0.30, 0.50, 0.40), "1toN-zero-d1-s0": (0.40, 0.37, 0.43)}}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- fixture data

def _correct(clean: float, rate: float, eps: float) -> int:
    return round(N * (clean - rate * eps))


def _attack_row(experiment, attacker, defender, attack, eps, correct, attacker_seed, hashes):
    loss, bound, delta, head, seed, clean = MEMBERS[defender]
    return attack_record(attacker, defender, attack, eps, correct, round(N * clean), N, mode=experiment,
                         defender_loss=loss, defender_bound=bound, defender_delta=delta, defender_head=head,
                         attacker_seed=attacker_seed, defender_seed=seed,
                         attacker_sha256=hashes.get(attacker, "a" * 64), defender_sha256=hashes[defender])


def attack_rows(hashes: dict[str, str]) -> list[dict]:
    """Every cell of the fixture, on the weights ``hashes`` (name -> sha256; attackers
    outside the zoo get a placeholder)."""
    rows = []
    for defender, spec in MEMBERS.items():
        for attack in ATTACKS:
            for eps in EPS:
                correct = _correct(spec[5], WB_RATE[(defender, attack)], eps)
                rows.append(_attack_row("whitebox", defender, defender, attack, eps, correct, spec[4], hashes))
    for attacker, seed in ATTACKERS.items():
        for defender, spec in MEMBERS.items():
            for i, attack in enumerate(ATTACKS):
                for eps in EPS:
                    correct = _correct(spec[5], BB_RATE[(attacker, defender)][i], eps)
                    rows.append(_attack_row("blackbox", attacker, defender, attack, eps, correct, seed, hashes))
    sanity = _attack_row("sanity", "ce-s0", "ce-s0", "ifgsm", 1.0, 3, 0, hashes)
    return rows + [sanity]


def experiment_rows(experiment: str, table: dict) -> list:
    rows = []
    for setting, members in table.items():
        for member, accuracies in members.items():
            loss, bound, delta, head, seed, _ = MEMBERS[member]
            for repeat, acc in enumerate(accuracies):
                rows.append(experiment_record(member, setting, repeat, acc, experiment, loss=loss,
                                              bound=bound if loss == "1toN" else "",
                                              delta=None if loss == "ce" else delta, head=head, seed=seed))
    return rows


FLAGS = [FlagRecord(run_id="r2", flag=flag, passed=passed, scope=scope, detail=detail) for flag, passed, scope, detail in (
    ("monotone_in_eps", True, "fgsm/ce/native ce-s0 -> ce-s0", "3 eps values"),
    ("eps0_is_clean", True, "fgsm/ce/native ce-s0 -> ce-s0", "ok"),
    ("whitebox_not_above_transfer", False, "fgsm/ce/native ce-s1 -> hinge-d1-s0 eps 0.1", "white-box 0.7300, transfer 0.6300"),
    ("large_eps_to_chance", True, "ifgsm/ce/native ce-s0 eps 1", "ok"),
)]


def store_records(results_dir: Path, records: list) -> None:
    """``records`` as the content of the store of ``results_dir``, in this order."""
    with ResultStore(results_dir) as store:
        store_in_runs(store, records)


def make_zoo(zoo_dir: Path) -> None:
    """Three untrained digits-cnn members saved as real zoo members (weights + card)."""
    for i, (name, (loss, bound, delta, head, seed, clean)) in enumerate(MEMBERS.items()):
        torch.manual_seed(i)
        model = create_model("digits-cnn", 10, head, (0.3,), (0.37,))
        card = {
            "name": name, "dataset": DATASET, "architecture": "digits-cnn", "head": head,
            "loss": {"name": loss, "bound": bound, "delta": delta}, "train": {"epochs": 3, "lr": 0.001, "batch_size": 256},
            "seed": seed, "role": "defender", "split_hash": "s" * 64, "num_train": 1293, "num_classes": 10, "mean": [0.3], "std": [0.37],
            "clean_test_accuracy": clean, "val_accuracy": clean - 0.01, "epochs": 3, "steps": 15,
            "stop_reason": "epochs", "versions": {"robench": "0.1.0", "torch": "2.x"},
        }
        save_member(zoo_dir / DATASET / name, model, card)


def zoo_hashes(zoo_dir: Path) -> dict[str, str]:
    return {c["name"]: c["weights_sha256"] for c in list_members(zoo_dir, DATASET)}


def make_results(results_dir: Path, zoo_dir: Path, noise: bool = True, attacks: list | None = None,
                 flags: bool = True) -> None:
    """The fixture's records (``attacks`` instead of its attack records, when given) in a store."""
    records = list(attacks) if attacks is not None else attack_rows(zoo_hashes(zoo_dir))
    records += experiment_rows("generalization", GEN) + (experiment_rows("noise", NOISE) if noise else [])
    store_records(results_dir, records + (FLAGS if flags else []))


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    make_zoo(root)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory, zoo_dir) -> Path:
    """The full report of the fixture results (margins included), written once."""
    root = tmp_path_factory.mktemp("report")
    make_results(root / "results", zoo_dir)
    torch.set_num_threads(1)
    return write_report(DATASET, root / "results", zoo_dir, root / "out")


def table(report: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(report.parent / "tables" / f"{name}.csv", keep_default_na=True)


# ---------------------------------------------------------------- expected values by hand

def t_interval(values) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    half = scipy_stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def acc_of(mode, attacker, defender, attack, eps) -> float:
    spec = MEMBERS[defender]
    rate = WB_RATE[(defender, attack)] if mode == "whitebox" else BB_RATE[(attacker, defender)][ATTACKS.index(attack)]
    return _correct(spec[5], rate, eps) / N


def blackbox_sample(member: str) -> list[float]:
    return [acc_of("blackbox", a, member, t, e) - acc_of("blackbox", a, "ce-s0", t, e)
            for a in ATTACKERS for t in ATTACKS for e in EPS if e > 0]


# ---------------------------------------------------------------- tables

def test_output_layout(report):
    out = report.parent
    assert report.name == "index.html" and (out / "report.md").exists()
    for name in ("clean_accuracy", "whitebox", "blackbox", "matrix", "generalization", "noise", "claims",
                 "flags", "margins"):
        assert (out / "tables" / f"{name}.csv").stat().st_size > 0, name
        text = (out / "tables" / f"{name}.md").read_text()
        if name in ("whitebox", "blackbox"):  # what every row shares, then the table
            head, _, text = text.partition("\n\n")
            assert head == "Every row: attack loss ce, backend native, schedule default, n 100, precision fp32."
        assert text.startswith(("|", "###")), name
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_clean_accuracy_table_from_cards(report):
    clean = table(report, "clean_accuracy").set_index("member")
    assert list(clean.index) == list(MEMBERS)  # ce, hinge, 1toN order
    for name, spec in MEMBERS.items():
        assert clean.loc[name, "clean_test_accuracy"] == pytest.approx(spec[5])
        assert clean.loc[name, "loss"] == spec[0] and clean.loc[name, "head"] == spec[3]


@pytest.mark.parametrize("mode", ["whitebox", "blackbox"])
def test_attack_tables_hold_every_cell(report, mode):
    long = table(report, mode)
    expected = 3 * 2 * 3 * (1 if mode == "whitebox" else 2)
    assert len(long) == expected and (long["eps"] <= 0.2).all()  # the sanity row (ε = 1) stays out
    for row in long.itertuples():
        assert row.accuracy == pytest.approx(acc_of(mode, row.attacker, row.defender, row.attack, row.eps))
    md = (report.parent / "tables" / f"{mode}.md").read_text()
    assert "ε=0.1" in md and "ε=0.2" in md


def test_matrix_table(report):
    long = table(report, "matrix")
    assert len(long) == 2 * 3 * 2 * 3  # 2 attackers × 3 defenders × 2 attacks × 3 ε (no diagonal here)
    assert set(long["attacker"]) == set(ATTACKERS)
    md = (report.parent / "tables" / "matrix.md").read_text()
    assert md.count("### ") == 2 * 3 and "### ifgsm, ε = 0.2" in md


@pytest.mark.parametrize("experiment,data", [("generalization", GEN), ("noise", NOISE)])
def test_experiment_summaries(report, experiment, data):
    summary = table(report, experiment)
    assert len(summary) == 2 * 3
    for row in summary.itertuples():
        values = data[row.setting][row.member]
        mean, low, high = t_interval(values)
        assert (row.n, row.mean, row.ci_low, row.ci_high) == (3, pytest.approx(mean), pytest.approx(low),
                                                               pytest.approx(high))
        diffs = np.subtract(values, data[row.setting]["ce-s0"])
        if row.member == "ce-s0":
            assert row.diff_vs_ce == 0
        else:
            d_mean, d_low, d_high = t_interval(diffs)
            assert (row.diff_vs_ce, row.diff_ci_low, row.diff_ci_high) == (
                pytest.approx(d_mean), pytest.approx(d_low), pytest.approx(d_high))


# ---------------------------------------------------------------- claims

def _welch(t, r, level=0.95) -> tuple[float, float, float]:
    t, r = np.asarray(t), np.asarray(r)
    vt, vr = t.var(ddof=1) / len(t), r.var(ddof=1) / len(r)
    df = (vt + vr) ** 2 / (vt ** 2 / (len(t) - 1) + vr ** 2 / (len(r) - 1))
    half = scipy_stats.t.ppf((1 + level) / 2, df) * math.sqrt(vt + vr)
    return t.mean() - r.mean(), t.mean() - r.mean() - half, t.mean() - r.mean() + half


def test_claims_with_one_seed_per_configuration_stay_inconclusive(report):
    """The fixture zoo has one seed per configuration: no attack claim can be tested
    (too few seeds), while the experiment claims (3 repeats each) are, with Welch's
    difference and interval over the repeats."""
    claims = table(report, "claims").set_index("claim")
    claims.index = claims.index.astype(str)
    for key, data, setting in (("1", GEN, 0.1), ("2", NOISE, 0.8)):
        mean, low, high = _welch(data[setting]["1toN-zero-d1-s0"], data[setting]["ce-s0"])
        row = claims.loc[key]
        assert (row["treatment_units"], row["reference_units"], row["difference"], row["ci_low"], row["ci_high"]) == (
            3, 3, pytest.approx(mean), pytest.approx(low), pytest.approx(high)), key
        assert math.isfinite(row["p_adjusted"]), key
    for key in ("3bb", "3wb", "4bb", "4wb", "5wb"):
        assert claims.loc[key, "verdict"] == INCONCLUSIVE and claims.loc[key, "reason"].startswith("too few seeds")
        assert claims.loc[key, "treatment_units"] == 1 and math.isnan(claims.loc[key, "p_adjusted"])
    for key in ("3wc", "6bb", "7wb", "S1bb", "S2bb", "S3wb"):  # no worst case, zero/sym pair, 1toN+ce, ce-unit, δ pair
        assert claims.loc[key, "verdict"] == NOT_RUN and claims.loc[key, "treatment_units"] == 0
        assert claims.loc[key, "reason"].startswith("no data")
    by_eps = table(report, "claims_by_eps")
    assert set(by_eps["claim"].astype(str)) == {"3bb", "3wb", "4bb", "4wb", "5wb"}
    assert set(by_eps["eps"]) == {0.1, 0.2}


def _matrix_row(attacker, defender, attack, eps, accuracy) -> dict:
    seed = int(attacker[-1]), int(defender[-1])
    loss = defender.split("-")[0]
    return {"mode": "blackbox", "attacker": attacker, "defender": defender, "attack": attack, "eps": eps,
            "accuracy": accuracy, "attacker_loss": "ce", "defender_loss": loss, "defender_bound": "sym",
            "defender_delta": 1.0, "defender_head": "unit" if loss == "1toN" else "linear",
            "attacker_seed": seed[0], "defender_seed": seed[1]}


def test_black_box_claims_count_only_attackers_of_a_seed_no_defender_uses():
    """A matrix in which ce-s0 attacks its seed-0 siblings: its transfer hits them harder
    than the ce-s1 reference, so counting it would turn claims 3a and 3b against them."""
    from robench.report.build import figure_attackers
    from robench.report.claim_data import independent_ce_attackers
    from robench.report.claims import CLAIMS, claim_sample, units_of

    defenders = ("ce-s0", "ce-s1", "hinge-s0", "1toN-s0")
    eps_grid = (0.1, 0.2, 0.3)
    under_ce_s1 = {"ce-s0": 0.50, "hinge-s0": 0.60, "1toN-s0": 0.70}
    under_ce_s0 = {"ce-s1": 0.50, "hinge-s0": 0.20, "1toN-s0": 0.25}  # same-seed siblings fall
    rows = []
    for attacker, table_ in (("ce-s1", under_ce_s1), ("ce-s0", under_ce_s0)):
        for i, eps in enumerate(eps_grid):
            for defender in defenders:
                if defender in table_:
                    rows.append(_matrix_row(attacker, defender, "fgsm", eps, table_[defender] - 0.01 * i * (i + 1)))
    frame = pd.DataFrame(rows)
    frame.loc[frame["defender"] == "ce-s0", "accuracy"] = [0.50, 0.49, 0.46]  # the reference, not on a line
    assert independent_ce_attackers(frame) == ["ce-s1"] and figure_attackers(frame) == ["ce-s1"]
    claims = {c.key: c for c in CLAIMS}
    for claim, member in (("3bb", "hinge-s0"), ("4bb", "1toN-s0")):
        sample = claim_sample(claims[claim], units_of(claims[claim], frame, {}))
        attacked = frame[frame["attacker"] == "ce-s1"].set_index("eps")
        expected = (attacked[attacked["defender"] == member]["accuracy"]
                    - attacked[attacked["defender"] == "ce-s0"]["accuracy"]).mean()
        assert sample.differences.to_dict() == {0: pytest.approx(expected)}, claim  # one seed: seed 0
        assert expected > 0 and "ce-s0" not in sample.members - {"ce-s0"}, claim


# ---------------------------------------------------------------- figures and pages

def test_figures_are_png_and_svg(report):
    figures = report.parent / "figures"
    for name in ("claims", "generalization", "noise", "blackbox", "whitebox", "matrix", "margins"):
        png = (figures / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, name
        root = ET.parse(figures / f"{name}.svg").getroot()
        assert root.tag.endswith("svg"), name


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag in ("link", "script"):
            raise AssertionError(f"external resource <{tag}> in a self-contained page")
        if "id" in attrs:
            self.ids.append(attrs["id"])

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_self_contained(report):
    parser = _Collector()
    parser.feed(report.read_text(encoding="utf-8"))
    parser.close()
    assert len(parser.images) == 7
    for src in parser.images:
        assert src.startswith("data:image/png;base64,") or (report.parent / src).exists()
    assert {"glance", "claims", "flags", "clean", "generalization", "noise", "blackbox", "whitebox", "matrix",
            "protocol"} <= set(parser.ids)
    text = " ".join(parser.text)
    assert "supported" in text and "contradicted" in text and "inconclusive" in text
    assert "torch" in text and "split hash" in text


def test_markdown_links_existing_figures(report):
    md = (report.parent / "report.md").read_text()
    links = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(links) == 7 and all((report.parent / link).exists() for link in links)
    assert "## Claims of the paper" in md and "## Validity flags" in md
    assert links[0] == "figures/claims.png" and md.index(links[0]) < md.index("## Claims of the paper")


def test_flags_are_recomputed_from_the_records_failures_first(report, zoo_dir):
    """The flags table is what the records give (compute_flags over the current records),
    failures first; tests/test_record_integrity.py shows it whatever the store's flags
    table says."""
    from robench.evaluate.validity import compute_flags
    from robench.report.load import load_results

    flags = table(report, "flags")
    assert list(flags["passed"]) == sorted(flags["passed"])  # failures first
    results = load_results(DATASET, report.parent.parent / "results", zoo_dir)
    expected = {(f["flag"], f["scope"], f["passed"]) for f in compute_flags(results.records)}
    assert set(zip(flags["flag"], flags["scope"], flags["passed"])) == expected
    assert ("whitebox_not_above_transfer", "fgsm/ce/native ce-s1 -> hinge-d1-s0 eps 0.1", False) in expected
    page = report.read_text()
    assert "Failed checks" in page and "Every check (failures first)" not in page  # every check: the CSV only
    counts = table(report, "flag_counts").set_index("flag")
    masking = ["gradient_free_not_stronger", "converged", "ce_dlr_gap", "gradient_saturation"]
    assert (counts.loc[masking, "status"] == "not run").all() and (counts.loc[masking, "checked"] == 0).all()
    assert ("not run (no records they check): gradient_free_not_stronger, converged, ce_dlr_gap, "
            "gradient_saturation") in page


# ---------------------------------------------------------------- partial and empty results

def test_partial_results_say_what_is_missing(tmp_path, zoo_dir):
    make_results(tmp_path / "results", zoo_dir, noise=False, flags=False)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"no noise results: run `robench experiment noise --dataset {DATASET}`" in md
    assert "no noise results: run <code>robench experiment noise" in index.read_text()
    claims = pd.read_csv(tmp_path / "out" / "tables" / "claims.csv").set_index("claim")
    assert claims.loc["2", "verdict"] == NOT_RUN and "robench experiment noise" in claims.loc["2", "reason"]
    assert not (tmp_path / "out" / "figures" / "noise.png").exists()


def test_nothing_run_still_writes_a_page(tmp_path):
    index = write_report(DATASET, tmp_path / "nowhere", tmp_path / "nozoo", tmp_path / "out", margins=False)
    page = index.read_text()
    assert "Nothing has been run" in page and f"robench run --dataset {DATASET}" in page
    assert "Failed-training check: not run (no zoo cards" in page
    assert f"robench train zoo --dataset {DATASET}" in page
    parser = _Collector()
    parser.feed(page)
    assert parser.images == []


def test_matrix_eps_off_grid_picks_the_nearest(tmp_path, zoo_dir):
    make_results(tmp_path / "results", zoo_dir)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", matrix_eps=0.17,
                         margins=False)
    assert "ε = 0.17 is not on the grid; showing the nearest, ε = 0.2" in index.read_text()


def test_fmt_eps():
    assert fmt_eps(0.15) == "0.15" and fmt_eps(0.2) == "0.2" and fmt_eps(8 / 255) == "8/255" and fmt_eps(0) == "0"


def test_csv_results_from_before_the_store_ask_for_the_migration(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "attacks.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="robench results migrate"):
        write_report(DATASET, results, tmp_path / "nozoo", tmp_path / "out", margins=False)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- superseded rows and precisions

def _stale_copy(row, correct: int):
    """``row`` as an earlier run on other weights of its defender (a retrained member)."""
    return dataclasses.replace(row, defender_sha256="0" * 64, correct=correct,
                               attacker_sha256="0" * 64 if row.attacker == row.defender else row.attacker_sha256)


def test_rows_on_earlier_weights_are_left_out(tmp_path, zoo_dir):
    """A member retrained to new weights keeps its old records in the store (their key holds the
    old hash); tables, figures and claims read only the rows on the zoo's weights now."""
    rows = attack_rows(zoo_hashes(zoo_dir))
    stale = [_stale_copy(r, 0) for r in rows if r.defender == "hinge-d1-s0" and r.mode != "sanity"]
    make_results(tmp_path / "results", zoo_dir, attacks=stale + rows)  # the old run was stored first
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    for mode in ("whitebox", "blackbox"):
        long = pd.read_csv(tmp_path / "out" / "tables" / f"{mode}.csv")
        assert len(long) == 3 * 2 * 3 * (1 if mode == "whitebox" else 2)
        for row in long.itertuples():
            assert row.accuracy == pytest.approx(acc_of(mode, row.attacker, row.defender, row.attack, row.eps))
    claims_now = pd.read_csv(tmp_path / "out" / "tables" / "claims.csv")
    claims_clean = pd.read_csv(_clean_report(tmp_path / "clean", zoo_dir) / "tables" / "claims.csv")
    pd.testing.assert_frame_equal(claims_now, claims_clean)
    assert (f"Left out of the stored attack records: {len(stale)} records computed on earlier weights of "
            "hinge-d1-s0.") in index.read_text()


def _clean_report(root: Path, zoo_dir: Path) -> Path:
    make_results(root / "results", zoo_dir)
    write_report(DATASET, root / "results", zoo_dir, root / "out", margins=False)
    return root / "out"


def test_without_cards_the_newest_run_of_a_cell_counts(tmp_path, zoo_dir):
    rows = attack_rows(zoo_hashes(zoo_dir))
    older = [_stale_copy(r, 0) for r in rows if r.defender == "ce-s0" and r.mode == "whitebox"]
    make_results(tmp_path / "results", zoo_dir, attacks=older + rows)
    index = write_report(DATASET, tmp_path / "results", tmp_path / "nozoo", tmp_path / "out", margins=False)
    long = pd.read_csv(tmp_path / "out" / "tables" / "whitebox.csv")
    mine = long[long["defender"] == "ce-s0"]
    assert len(mine) == 2 * 3 and all(
        r.accuracy == pytest.approx(acc_of("whitebox", "ce-s0", "ce-s0", r.attack, r.eps)) for r in mine.itertuples())
    assert f"Left out of the stored attack records: {len(older)} records of cells computed again later." in (
        index.read_text())


def _claims(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / "claims.csv")


def test_two_precisions_are_kept_apart_and_one_is_chosen(tmp_path, zoo_dir):
    """A cell computed in bf16 and in fp32 is two table rows; the report will not pick a
    precision for the figures and claims, and reads the one it is given."""
    rows = attack_rows(zoo_hashes(zoo_dir))
    bf16 = [dataclasses.replace(r, precision="bf16", correct=0)
            for r in rows if r.mode == "whitebox" and r.defender == "ce-s0"]
    make_results(tmp_path / "results", zoo_dir, attacks=rows + bf16)
    with pytest.raises(UserError, match=r"several precisions \(bf16, fp32\); choose one with --precision"):
        write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False,
                 evaluation=Evaluation(precision="fp32"))
    long = pd.read_csv(tmp_path / "out" / "tables" / "whitebox.csv")
    assert len(long) == 3 * 2 * 3 + len(bf16)
    assert set(long.loc[long["precision"] == "bf16", "accuracy"]) == {0.0}
    assert "precision" in (tmp_path / "out" / "tables" / "whitebox.md").read_text()
    pd.testing.assert_frame_equal(_claims(tmp_path / "out"), _claims(_clean_report(tmp_path / "clean", zoo_dir)))


def test_runs_with_another_schedule_are_kept_apart(tmp_path, zoo_dir):
    """IFGSM run again with --steps 1 --step-size 0.01: its records are table rows of their
    own (the schedule column says which); the default evaluation reads Kurakin's schedule,
    and choosing the other schedule reads only its records."""
    from robench.report.load import load_results

    rows = attack_rows(zoo_hashes(zoo_dir))
    custom = [dataclasses.replace(r, steps=1, step_size=0.01, schedule="steps 1, step 0.01", correct=N)
              for r in rows if r.mode == "whitebox" and r.attack == "ifgsm"]
    make_results(tmp_path / "results", zoo_dir, attacks=rows + custom)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    long = pd.read_csv(tmp_path / "out" / "tables" / "whitebox.csv")
    assert len(long) == 3 * 2 * 3 + len(custom)
    assert set(long.loc[long["schedule"] == "steps 1, step 0.01", "accuracy"]) == {1.0}
    assert set(long["schedule"]) == {"default", "steps 1, step 0.01"}
    assert "schedule" in (tmp_path / "out" / "tables" / "whitebox.md").read_text()
    pd.testing.assert_frame_equal(_claims(tmp_path / "out"), _claims(_clean_report(tmp_path / "clean", zoo_dir)))
    assert "the protocol's attack loss, backend and schedule" in index.read_text()
    attacks = load_results(DATASET, tmp_path / "results", zoo_dir).attacks
    chosen, note = Evaluation(schedule="steps 1, step 0.01").select(attacks)
    assert len(chosen) == len(custom) and set(chosen["accuracy"]) == {1.0}
    assert note.startswith("Figures and claims read one evaluation: attack loss ce, backend native, "
                           f"schedule steps 1, step 0.01, precision fp32, 100 test images ({len(custom)} records)")


def test_an_evaluation_is_chosen_by_its_run(tmp_path, zoo_dir):
    """Records of two runs (the white-box run and the matrix): --run-id reads one run's
    records only, and an unknown run id is a user error naming the runs there are."""
    from robench.report.load import load_results

    rows = [dataclasses.replace(r, run_id="matrix" if r.mode == "blackbox" else "wb") for r in
            attack_rows(zoo_hashes(zoo_dir))]
    make_results(tmp_path / "results", zoo_dir, attacks=rows)
    results = load_results(DATASET, tmp_path / "results", zoo_dir)
    ids = {json.loads(config)["label"]: run_id for run_id, config in zip(results.runs["run_id"], results.runs["config"])}
    chosen, note = Evaluation(run_id=ids["matrix"]).select(results.attacks)
    assert set(chosen["mode"]) == {"blackbox"} and len(chosen) == sum(r.mode == "blackbox" for r in rows)
    assert note.startswith(f"Figures and claims read one evaluation: run {ids['matrix']}, precision fp32")
    runs = sorted(set(results.attacks["run_id"]))  # the matrix and the white-box run (its sanity cells apart)
    assert ids["matrix"] in runs and len(runs) == 2
    with pytest.raises(UserError, match="no attack records of run 'nope' here; runs with attack records: "
                                        + ", ".join(runs)):
        Evaluation(run_id="nope").select(results.attacks)


def test_rows_of_another_dataset_are_left_out(tmp_path, zoo_dir):
    rows = attack_rows(zoo_hashes(zoo_dir))
    foreign = [dataclasses.replace(r, dataset="mnist", correct=0) for r in rows]
    make_results(tmp_path / "results", zoo_dir, attacks=rows + foreign)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    long = pd.read_csv(tmp_path / "out" / "tables" / "whitebox.csv")
    assert len(long) == 3 * 2 * 3 and 0.0 not in set(long["accuracy"])
    assert f"{len(foreign)} attack records of other datasets (mnist) were left out." in index.read_text()


def test_noise_runs_stopped_by_the_epoch_cap_are_said():
    from robench.report.build import stop_reason_notes

    rows = pd.DataFrame([r.as_dict() for r in experiment_rows("noise", NOISE)])
    rows["stop_reason"] = ["train_accuracy" if s == 0.0 else "epoch_cap" for s in rows["setting"]]
    how, capped = stop_reason_notes(rows, "noise")
    assert how == "How the runs stopped, per rate: 0: train_accuracy 9; 0.8: epoch_cap 9."
    assert capped.startswith("9 of 18 runs reached the epoch cap before 80 % noisy-training accuracy")
    assert stop_reason_notes(rows[rows["setting"] == 0.0], "noise") == [
        "How the runs stopped, per rate: 0: train_accuracy 9."]


def test_matrix_and_pooled_claims_read_one_precision(tmp_path, zoo_dir):
    """Black-box records in bf16, white-box records in fp32: the report asks which; with
    bf16 the matrix has no fp32 diagonal among bf16 cells and claim 4 says why it has no data."""
    rows = [dataclasses.replace(r, precision="bf16" if r.mode == "blackbox" else "fp32")
            for r in attack_rows(zoo_hashes(zoo_dir))]
    make_results(tmp_path / "results", zoo_dir, attacks=rows)
    with pytest.raises(UserError, match="choose one with --precision"):
        write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False,
                         evaluation=Evaluation(precision="bf16")).read_text()
    assert "None of these records is in the evaluation the figures read" in index
    matrix = pd.read_csv(tmp_path / "out" / "tables" / "matrix.csv")
    assert (matrix["attacker"] != matrix["defender"]).all()
    assert "no white-box rows for the diagonal (bf16; 100 test images)" in index
    claims = _claims(tmp_path / "out").set_index("claim")
    assert claims.loc["5wb", "reason"].startswith("no data: no white-box records in the evaluation the claims read")


def test_an_attack_on_fewer_samples_keeps_its_own_rows(tmp_path, zoo_dir):
    """White-box IFGSM stored on 40 samples only: one sample count per mode and attack is
    all the default evaluation asks, so IFGSM stays in the figure and the claims, and the
    caption gives both counts; a second count of one attack is a choice for the user."""
    from robench.report.load import load_results

    rows = [dataclasses.replace(r, n=40, correct=round(r.accuracy * 40), clean_correct=round(r.clean_accuracy * 40))
            if r.mode == "whitebox" and r.attack == "ifgsm" else r for r in attack_rows(zoo_hashes(zoo_dir))]
    make_results(tmp_path / "results", zoo_dir, attacks=rows)
    index = write_report(DATASET, tmp_path / "results", zoo_dir, tmp_path / "out", margins=False).read_text()
    attacks = load_results(DATASET, tmp_path / "results", zoo_dir).attacks
    chosen, _ = Evaluation().select(attacks)
    whitebox = chosen[chosen["mode"] == "whitebox"]
    assert dict(whitebox.groupby("attack")["n"].unique().map(list)) == {"fgsm": [N], "ifgsm": [40]}
    assert "FGSM on 100 test images, IFGSM on 40 test images" in index
    assert "1 seed reference, 4 cells" in _claims(tmp_path / "out").set_index("claim").loc["5wb", "detail"]  # both attacks
    both = pd.concat([attacks, attacks[attacks["mode"] == "whitebox"].assign(n=N)])
    with pytest.raises(UserError, match="several test image counts per mode and attack .*--num-samples"):
        Evaluation().select(both)
    assert len(Evaluation(num_samples=40).select(both)[0]) == 3 * 3  # IFGSM's 40-image white-box records


def test_describe_rows():
    from robench.report.load import describe_rows

    rows = pd.DataFrame({"attack": ["fgsm", "ifgsm", "ifgsm"], "n": [10, 10, 10], "precision": ["fp32"] * 3,
                         "schedule": ["default", "default", "steps 5, step default"]})
    assert describe_rows(rows) == "fp32; 10 test images; IFGSM schedule steps 5, step default"
    assert describe_rows(rows.iloc[:0]) == ""


def test_matrix_panels_share_rows_and_columns():
    """IFGSM cells of one attacker missing: every panel still has every attacker row (blank
    cells), so the first panel's labels fit all of them; a cell is the mean over a
    configuration's seeds."""
    from robench.report.figures import matrix_figure

    attackers, configurations = ["ce-s100", "ce-s101", "ce-s102"], ["ce", "hinge-d1"]
    long = pd.DataFrame([{"attack": a, "eps": 0.1, "attacker": att, "configuration": c, "accuracy": 0.4 + 0.2 * seed}
                         for a in ATTACKS for att in attackers for c in configurations for seed in (0, 1)
                         if not (a == "ifgsm" and att == "ce-s100")])
    fig = matrix_figure(long, 0.1, attackers, configurations)
    fgsm, ifgsm = [ax for ax in fig.axes if ax.get_title()]
    # matplotlib < 3.8 gives a mesh's array flat, row by row; the reshape fails unless it has 3 × 2 cells
    cells = [np.ma.asarray(ax.collections[0].get_array()).reshape(3, 2) for ax in (fgsm, ifgsm)]
    assert cells[1].mask[0].all() and not cells[1].mask[1:].any()  # ce-s100's IFGSM row is blank
    assert np.allclose(cells[0], 0.5)  # mean of the seeds' 0.4 and 0.6


@pytest.mark.parametrize("only_in", ATTACKS)
def test_legend_lists_configurations_of_every_panel(only_in):
    """hinge drawn in one panel only: still in the legend, among the configurations;
    each seed's curve is drawn faint behind the mean."""
    from robench.report.figures import attack_figure, make_palette

    rows = pd.DataFrame([{"attack": a, "eps": e, "accuracy": 0.5 + 0.01 * seed, "configuration": c,
                          "defender_seed": seed}
                         for a in ATTACKS for c in ("ce", "hinge-d1") for e in EPS for seed in (0, 1, 2)
                         if c == "ce" or a == only_in])
    fig = attack_figure(rows, "t", make_palette(["ce", "hinge-d1"]), {"ce": "ce", "hinge-d1": "hinge"})
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert labels == ["configuration", "ce", "hinge-d1", "loss", "ce", "hinge"]
    panel = [ax for ax in fig.axes if ax.get_title() == only_in.upper()][0]
    faint = [line for line in panel.get_lines() if line.get_alpha() == 0.25]
    assert len(faint) == 2 * 3  # two configurations × three seeds
    assert len(panel.collections) >= 2  # a band per configuration


def test_presets_named_from_a_card_training_record():
    from robench.config import to_dict
    from robench.presets import presets_matching, train_spec

    quick = to_dict(train_spec("mnist", "quick", "hinge"))
    assert presets_matching("mnist", "hinge", quick) == ["quick"]
    assert presets_matching("mnist", "ce", quick) == []  # hinge trains longer
    assert presets_matching("mnist", "hinge", {**quick, "lr": 0.5}) == []
    assert presets_matching("digits", "ce", to_dict(train_spec("digits", "quick", "ce"))) == ["paper", "quick"]
    assert presets_matching("nosuch", "ce", quick) == []
