"""Validity flags on hand-made result rows: each passes and fails when it should."""

from __future__ import annotations

import csv

import pytest

from robench.evaluate.validity import FLAGS, chance_bound, compute_flags, summarize_flags, write_flags


def _row(attacker, defender, attack, eps, correct, clean=90, n=100, experiment=None, k=10):
    return {
        "experiment": experiment or ("whitebox" if attacker == defender else "blackbox"),
        "attacker": attacker, "defender": defender, "attack": attack, "attack_loss": "ce",
        "backend": "native", "eps": eps, "correct": correct, "accuracy": correct / n,
        "clean_correct": clean, "clean_accuracy": clean / n, "n": n, "num_classes": k,
    }


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
    assert {f["flag"] for f in flags} == set(FLAGS)
    assert all(f["passed"] for f in flags)


def test_accuracy_rising_with_eps_fails_monotone():
    rows = _sound_rows()
    rows[2]["correct"] = 70  # fgsm a->a at eps 0.2 above eps 0.1 (60)
    assert "monotone_in_eps" in _failed(rows)


def test_eps0_differing_from_clean_fails():
    rows = _sound_rows()
    rows[0]["correct"] = 89
    assert "eps0_is_clean" in _failed(rows)


def test_ifgsm_above_fgsm_fails():
    rows = _sound_rows()
    whitebox_ifgsm = [r for r in rows if r["attacker"] == r["defender"] == "a" and r["attack"] == "ifgsm"]
    whitebox_ifgsm[1]["correct"] = 65  # eps 0.1: white-box FGSM has 60
    assert "ifgsm_not_above_fgsm" in _failed(rows)


def test_transfer_stronger_than_whitebox_fails():
    rows = _sound_rows()
    transfer = [r for r in rows if r["attacker"] == "b" and r["attack"] == "fgsm" and r["eps"] == 0.1][0]
    transfer["correct"] = 30  # white-box fgsm at 0.1 is 60
    assert "whitebox_not_above_transfer" in _failed(rows)


def test_large_eps_above_chance_fails():
    rows = _sound_rows()
    rows[-1]["correct"] = 30  # 0.30 > 0.1 + 3·0.03
    assert _failed(rows) == {"large_eps_to_chance"}
    assert chance_bound(10, 100) == pytest.approx(0.1 + 3 * 0.03)


def test_failures_first_and_written(tmp_path):
    rows = _sound_rows()
    rows[0]["correct"] = 89
    flags = compute_flags(rows)
    assert not flags[0]["passed"] and all(f["passed"] for f in flags[1:])
    write_flags(tmp_path / "flags.csv", flags)
    with open(tmp_path / "flags.csv") as f:
        stored = list(csv.DictReader(f))
    assert len(stored) == len(flags) and stored[0]["passed"] == "False"
    text = summarize_flags(flags)
    assert "FAILED eps0_is_clean" in text


def test_precisions_are_judged_apart():
    """bf16 and fp32 runs of the same cells (each sound on its own) are not compared with
    each other: a bf16 count above the fp32 one at a larger ε is no rise in ε."""
    fp32 = [{**r, "precision": "fp32"} for r in _sound_rows()]
    bf16 = [{**r, "precision": "bf16", "correct": r["correct"] + 5 * (r["eps"] > 0) * (r["eps"] < 1)} for r in _sound_rows()]
    flags = compute_flags(fp32 + bf16)
    assert all(f["passed"] for f in flags), [f for f in flags if not f["passed"]]
    alone = compute_flags(fp32)
    assert len(flags) == 2 * len(alone)
    assert {f["scope"] for f in flags} == {f["scope"] for f in alone} | {
        f["scope"].replace("/native", "/native bf16") for f in alone}


def _scheduled(rows, steps=None):
    """``rows`` with the (steps, step size) their attack resolves to, IFGSM's steps
    overridden by ``steps``."""
    from robench.attacks import create_attack

    out = []
    for r in rows:
        n_steps, size = create_attack(r["attack"]).schedule(r["eps"])
        if steps is not None and r["attack"] == "ifgsm":
            n_steps = steps
        out.append({**r, "steps": n_steps, "step_size": size})
    return out


def test_schedules_are_judged_apart():
    """A one-step IFGSM run stored beside the default one: its higher counts are no rise in
    ε, and a stronger 200-step run does not hide the default run's IFGSM above FGSM."""
    default = _scheduled(_sound_rows())
    one_step = [{**r, "correct": 89} for r in _scheduled(_sound_rows(), steps=1)
                if r["attack"] == "ifgsm" and r["experiment"] != "sanity" and r["eps"] > 0]
    flags = compute_flags(default + one_step)
    assert all(f["passed"] for f in flags if f["flag"] == "monotone_in_eps")
    assert any("(steps 1, step default)" in f["scope"] for f in flags)

    weak = [{**r, "correct": 70} if (r["attack"], r["eps"], r["attacker"]) == ("ifgsm", 0.2, "a")
            and r["experiment"] == "whitebox" else r for r in default]  # IFGSM 70 > FGSM 40
    strong = [{**r, "correct": 1} for r in _scheduled(_sound_rows(), steps=200)
              if (r["attack"], r["eps"], r["attacker"], r["experiment"]) == ("ifgsm", 0.2, "a", "whitebox")]
    verdicts = {f["scope"]: f["passed"] for f in compute_flags(weak + strong) if f["flag"] == "ifgsm_not_above_fgsm"}
    assert verdicts["ce/native a eps 0.2"] is False
    assert verdicts["ce/native (steps 200, step default) a eps 0.2"] is True


def test_ifgsm_that_cannot_reach_eps_is_not_held_against_fgsm():
    rows = _scheduled(_sound_rows())
    short = [{**r, "steps": 3, "step_size": 1 / 255, "schedule": "steps 3, step default", "correct": 89}
             for r in rows if r["attack"] == "ifgsm" and r["experiment"] == "whitebox" and r["eps"] > 0]
    compared = [f for f in compute_flags(rows + short) if f["flag"] == "ifgsm_not_above_fgsm"]
    assert compared and all("steps 3" not in f["scope"] for f in compared)
    reaching = [{**r, "step_size": 0.1, "schedule": "steps 3, step 0.1"} for r in short]  # 3 × 0.1 ≥ ε: compared
    failed = [f for f in compute_flags(rows + reaching) if f["flag"] == "ifgsm_not_above_fgsm" and not f["passed"]]
    assert failed and all("steps 3" in f["scope"] for f in failed)


def test_rows_without_a_precision_are_fp32():
    rows = _sound_rows()  # files written before the precision column
    assert compute_flags(rows) == compute_flags([{**r, "precision": "fp32"} for r in rows])


def test_current_rows_one_per_cell_on_the_zoo_weights():
    """Rows of a member's earlier weights go, rows of members outside the zoo stay, the
    last stored run of a cell wins, and a blank precision (rows from before that column)
    is fp32."""
    import pandas as pd

    from robench.evaluate.attack_runner import KEY_COLUMNS
    from robench.evaluate.current import current_attack_rows

    def row(defender, sha, correct, precision="fp32", eps="0.1"):
        return {"experiment": "blackbox", "attacker": "ce-s1", "attacker_sha256": "a", "defender": defender,
                "defender_sha256": sha, "attack": "fgsm", "eps": eps, "n": "100", "precision": precision,
                "correct": correct}

    rows = pd.DataFrame([
        row("ce-s0", "old", "1"),            # earlier weights of a zoo member
        row("ce-s0", "new", "2", ""),        # before the precision column: fp32 ...
        row("ce-s0", "new", "3"),            # ... so this later fp32 run replaces it
        row("ce-s0", "new", "4", "bf16"),    # another precision: another cell
        row("gone", "x", "5"),               # a member no longer in the zoo
    ])
    kept, note = current_attack_rows(rows, KEY_COLUMNS, {"ce-s0": "new", "ce-s1": "a"})
    assert sorted(kept["correct"]) == ["3", "4", "5"]
    assert set(kept["precision"]) == {"fp32", "bf16"}
    assert note == ("Left out of attacks.csv: 1 row computed on earlier weights of ce-s0 and "
                    "1 row of cells computed again later.")
    assert current_attack_rows(rows.iloc[[2, 3]], KEY_COLUMNS, {})[1] == ""


def test_blank_later_columns_read_as_their_old_values():
    """A row stored before attack_loss, backend, precision and coupled_batch existed (blank
    there) is the same cell as a later ce / native / fp32 run of it, which replaces it;
    a NaN in a numeric column counts as blank too."""
    import pandas as pd

    from robench.evaluate.attack_runner import KEY_COLUMNS
    from robench.evaluate.current import LATER_COLUMNS, current_attack_rows, with_later_columns

    cell = {"experiment": "whitebox", "attacker": "ce-s0", "defender": "ce-s0", "attack": "fgsm", "eps": "0.1",
            "n": "100"}
    old = {**cell, "attack_loss": "", "backend": "", "precision": "", "coupled_batch": "", "correct": "1"}
    new = {**cell, "attack_loss": "ce", "backend": "native", "precision": "fp32", "coupled_batch": "", "correct": "2"}
    kept, note = current_attack_rows(pd.DataFrame([old, new]), KEY_COLUMNS, {})
    assert kept["correct"].tolist() == ["2"] and note.endswith("1 row of cells computed again later.")
    absent = with_later_columns(pd.DataFrame([cell]))
    assert {c: absent[c].iloc[0] for c in LATER_COLUMNS} == LATER_COLUMNS
    numeric = with_later_columns(pd.DataFrame({"coupled_batch": [float("nan"), 256.0]}))
    assert numeric["coupled_batch"].tolist() == ["", 256.0]
