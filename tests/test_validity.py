"""Validity flags on hand-made attack records: each passes and fails when it should."""

from __future__ import annotations

from dataclasses import replace

import pytest

from factories import attack_record
from robench.evaluate.masking import MASKING_FLAGS
from robench.evaluate.validity import FLAGS, chance_bound, compute_flags, summarize_flags
from robench.store import FlagRecord


def _row(attacker, defender, attack, eps, correct, clean=90, n=100, experiment=None):
    return attack_record(attacker, defender, attack, eps, correct, clean, n, mode=experiment)


def _sound_rows():
    rows = []
    for attack, counts in (("fgsm", (90, 60, 40)), ("ifgsm", (90, 50, 20))):
        rows += [_row("a", "a", attack, e, c) for e, c in zip((0.0, 0.1, 0.2), counts)]
        rows += [_row("b", "a", attack, e, c + 10 * (e > 0)) for e, c in zip((0.0, 0.1, 0.2), counts)]
    rows.append(_row("a", "a", "ifgsm", 1.0, 5, experiment="sanity"))
    return rows


def _failed(rows):
    return {f["flag"] for f in compute_flags(rows) if not f["passed"]}


def test_sound_results_pass_every_flag():
    flags = compute_flags(_sound_rows())
    assert {f["flag"] for f in flags} == set(FLAGS) - set(MASKING_FLAGS)  # FGSM/IFGSM rows: no masking check
    assert all(f["passed"] for f in flags)


def test_accuracy_rising_with_eps_fails_monotone():
    rows = _sound_rows()
    rows[2] = replace(rows[2], correct=70)  # fgsm a->a at eps 0.2 above eps 0.1 (60)
    assert "monotone_in_eps" in _failed(rows)


def test_eps0_differing_from_clean_fails():
    rows = _sound_rows()
    rows[0] = replace(rows[0], correct=89)
    assert "eps0_is_clean" in _failed(rows)


def test_ifgsm_above_fgsm_fails():
    rows = _sound_rows()
    rows = [replace(r, correct=65) if (r.mode, r.attack, r.eps) == ("whitebox", "ifgsm", 0.1) else r
            for r in rows]  # white-box FGSM has 60
    assert "ifgsm_not_above_fgsm" in _failed(rows)


def test_transfer_stronger_than_whitebox_fails():
    rows = _sound_rows()
    rows = [replace(r, correct=30) if (r.attacker, r.attack, r.eps) == ("b", "fgsm", 0.1) else r
            for r in rows]  # white-box fgsm at 0.1 is 60
    assert "whitebox_not_above_transfer" in _failed(rows)


def test_large_eps_above_chance_fails():
    rows = _sound_rows()
    rows[-1] = replace(rows[-1], correct=30)  # 0.30 > 0.1 + 3·0.03
    assert _failed(rows) == {"large_eps_to_chance"}
    assert chance_bound(10, 100) == pytest.approx(0.1 + 3 * 0.03)


def test_failures_first_and_summarized():
    rows = _sound_rows()
    rows[0] = replace(rows[0], correct=89)
    flags = compute_flags(rows)
    assert not flags[0]["passed"] and all(f["passed"] for f in flags[1:])
    assert flags[0]["members"] == {"a"}  # the white-box cell of member a
    text = summarize_flags([FlagRecord(run_id="r", flag=f["flag"], passed=f["passed"], scope=f["scope"],
                                       detail=f["detail"]) for f in flags])
    assert "FAILED eps0_is_clean" in text and "eps0_is_clean                3/4 passed" in text


def test_precisions_are_judged_apart():
    """bf16 and fp32 runs of the same cells (each sound on its own) are not compared with
    each other: a bf16 count above the fp32 one at a larger ε is no rise in ε."""
    fp32 = _sound_rows()
    bf16 = [replace(r, precision="bf16", correct=r.correct + 5 * (r.eps > 0) * (r.eps < 1)) for r in _sound_rows()]
    flags = compute_flags(fp32 + bf16)
    assert all(f["passed"] for f in flags), [f for f in flags if not f["passed"]]
    alone = compute_flags(fp32)
    assert len(flags) == 2 * len(alone)
    assert {f["scope"] for f in flags} == {f["scope"] for f in alone} | {
        f["scope"].replace("/native", "/native bf16") for f in alone}


def _scheduled(rows, steps):
    """``rows`` of IFGSM overridden to ``steps`` steps of 1/255 (FGSM records dropped)."""
    return [replace(r, steps=steps, schedule=f"steps {steps}, step default") for r in rows if r.attack == "ifgsm"]


def test_schedules_are_judged_apart():
    """A one-step IFGSM run stored beside the default one: its higher counts are no rise in
    ε, and a stronger 200-step run does not hide the default run's IFGSM above FGSM."""
    default = _sound_rows()
    one_step = [replace(r, correct=89) for r in _scheduled(_sound_rows(), steps=1)
                if r.mode != "sanity" and r.eps > 0]
    flags = compute_flags(default + one_step)
    assert all(f["passed"] for f in flags if f["flag"] == "monotone_in_eps")
    assert any("(steps 1, step default)" in f["scope"] for f in flags)

    weak = [replace(r, correct=70) if (r.attack, r.eps, r.attacker, r.mode) == ("ifgsm", 0.2, "a", "whitebox")
            else r for r in default]  # IFGSM 70 > FGSM 40
    strong = [replace(r, correct=1) for r in _scheduled(_sound_rows(), steps=200)
              if (r.eps, r.attacker, r.mode) == (0.2, "a", "whitebox")]
    verdicts = {f["scope"]: f["passed"] for f in compute_flags(weak + strong) if f["flag"] == "ifgsm_not_above_fgsm"}
    assert verdicts["ce/native a eps 0.2"] is False
    assert verdicts["ce/native (steps 200, step default) a eps 0.2"] is True


def test_ifgsm_that_cannot_reach_eps_is_not_held_against_fgsm():
    rows = _sound_rows()
    short = [replace(r, steps=3, step_size=1 / 255, schedule="steps 3, step default", correct=89)
             for r in rows if r.attack == "ifgsm" and r.mode == "whitebox" and r.eps > 0]
    compared = [f for f in compute_flags(rows + short) if f["flag"] == "ifgsm_not_above_fgsm"]
    assert compared and all("steps 3" not in f["scope"] for f in compared)
    reaching = [replace(r, step_size=0.1, schedule="steps 3, step 0.1") for r in short]  # 3 × 0.1 ≥ ε: compared
    failed = [f for f in compute_flags(rows + reaching) if f["flag"] == "ifgsm_not_above_fgsm" and not f["passed"]]
    assert failed and all("steps 3" in f["scope"] for f in failed)


def test_current_records_one_per_cell_on_the_zoo_weights():
    """Records of a member's earlier weights go, records of members outside the zoo stay,
    the last stored run of a cell wins, and another precision is another cell."""
    from robench.evaluate.current import current_attack_records

    def record(defender, sha, correct, precision="fp32", split="s"):
        return attack_record("ce-s1", defender, eps=0.1, correct=correct, attacker_sha256="a",
                             defender_sha256=sha, precision=precision, split_hash=split)

    records = [
        record("ce-s0", "old", 1),                 # earlier weights of a zoo member
        record("ce-s0", "new", 2, split="t"),      # an older run of the cell on another test split ...
        record("ce-s0", "new", 3),                 # ... replaced by this later run
        record("ce-s0", "new", 4, "bf16"),         # another precision: another cell
        record("gone", "x", 5),                    # a member no longer in the zoo
    ]
    kept, note = current_attack_records(records, {"ce-s0": "new", "ce-s1": "a"})
    assert sorted(r.correct for r in kept) == [3, 4, 5]
    assert note == ("Left out of the stored attack records: 1 record computed on earlier weights of ce-s0 and "
                    "1 record of cells computed again later.")
    assert current_attack_records(records[2:4], {}) == (records[2:4], "")
