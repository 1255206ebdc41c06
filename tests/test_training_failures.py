"""Failed trainings (robench/report/training_failures.py): the rule on cards, and a store
with one failed seed and one failed attacker whose records every claim leaves out, the
page naming both at its top."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from factories import attack_record, store_in_runs
from robench.models import create_model
from robench.report import write_report
from robench.report.load import load_results
from robench.report.training_failures import SEED_GAP, failed_trainings, without_failed
from robench.report.verdicts import evaluate_claims
from robench.store import ResultStore
from robench.zoo import save_member

DATASET = "digits"
N = 100
EPS = (0.0, 0.1, 0.2)
SEEDS = (0, 1, 2, 3)
ATTACKERS = {"ce-s100": 100, "ce-s101": 101, "ce-s102": 102}
# configuration -> (loss, bound, delta, head)
CONFIGURATIONS = {"ce": ("ce", "sym", 1.0, "linear"), "hinge-d1": ("hinge", "sym", 1.0, "linear"),
                  "1toN-zero-d1": ("1toN", "zero", 1.0, "unit")}
FAILED_SEED = "hinge-d1-s2"  # 0.84: above digits' floor (0.80), more than SEED_GAP below its configuration
FAILED_ATTACKER = "ce-s101"  # 0.50: below digits' floor


def _card(name: str, loss: str, bound: str, delta: float, head: str, seed: int, clean: float, role: str) -> dict:
    return {"name": name, "dataset": DATASET, "architecture": "digits-cnn", "head": head,
            "loss": {"name": loss, "bound": bound, "delta": delta}, "train": {"epochs": 3, "lr": 0.001, "batch_size": 256},
            "seed": seed, "role": role, "split_hash": "s" * 64, "num_train": 1293, "num_classes": 10,
            "mean": [0.3], "std": [0.37], "clean_test_accuracy": clean, "val_accuracy": clean, "epochs": 3,
            "steps": 15, "stop_reason": "epochs", "versions": {"robench": "0.1.0", "torch": "2.x"}}


def _clean(name: str) -> float:
    return {FAILED_SEED: 0.84, FAILED_ATTACKER: 0.50}.get(name, 0.95 + 0.01 * (len(name) % 3))


def _cards() -> list[dict]:
    cards = [_card(f"{c}-s{s}", *spec, s, _clean(f"{c}-s{s}"), "defender")
             for c, spec in CONFIGURATIONS.items() for s in SEEDS]
    return cards + [_card(a, "ce", "sym", 1.0, "linear", s, _clean(a), "attacker") for a, s in ATTACKERS.items()]


# ---------------------------------------------------------------- the rule

def test_the_floor_and_the_gap_below_the_configurations_median():
    failed = failed_trainings(_cards(), DATASET)
    assert list(failed) == [FAILED_ATTACKER, FAILED_SEED]
    assert failed[FAILED_ATTACKER].startswith("clean accuracy 0.500 is below the dataset's floor 0.80")
    assert "below the median" in failed[FAILED_SEED] and "hinge-d1's 4 members" in failed[FAILED_SEED]


def test_the_attackers_count_with_their_configuration_and_few_members_give_no_median():
    cards = [_card("ce-s0", "ce", "sym", 1.0, "linear", 0, 0.99, "defender"),
             _card("ce-s100", "ce", "sym", 1.0, "linear", 100, 0.99 - SEED_GAP - 0.01, "attacker")]
    assert failed_trainings(cards, DATASET) == {}  # two members: no median to be an outlier of
    cards.append(_card("ce-s101", "ce", "sym", 1.0, "linear", 101, 0.99, "attacker"))
    assert list(failed_trainings(cards, DATASET)) == ["ce-s100"]
    cards[1]["clean_test_accuracy"] = 0.99 - SEED_GAP + 0.01
    assert failed_trainings(cards, DATASET) == {}


# ---------------------------------------------------------------- a store with failures

def _accuracy(defender: str, attacker: str, attack: str, eps: float) -> float:
    """hinge and 1-to-N beat ce by a few points; the failed seed and the failed attacker's cells are
    far off, so any claim that let them in would move."""
    if eps == 0:
        return _clean(defender)
    value = _clean(defender) - (2.0 if attack == "ifgsm" else 1.5) * eps + (0.0 if defender.startswith("ce") else 0.04)
    seed = int(defender.rsplit("-s", 1)[1])
    value += 0.01 * ((seed * seed + len(defender)) % 5)  # a spread over seeds
    if defender == FAILED_SEED:
        value = 0.05
    if attacker == FAILED_ATTACKER:
        value = 0.9
    return value


def _records(hashes: dict[str, str]) -> list:
    records = []
    for configuration, (loss, bound, delta, head) in CONFIGURATIONS.items():
        for seed in SEEDS:
            defender = f"{configuration}-s{seed}"
            cells = [(defender, "whitebox", seed)] + [(a, "blackbox", s) for a, s in ATTACKERS.items()]
            for attacker, mode, attacker_seed in cells:
                for attack in ("fgsm", "ifgsm"):
                    for eps in EPS:
                        records.append(attack_record(
                            attacker, defender, attack, eps, round(N * _accuracy(defender, attacker, attack, eps)),
                            round(N * _clean(defender)), N, mode=mode, defender_loss=loss, defender_bound=bound,
                            defender_delta=delta, defender_head=head, defender_seed=seed,
                            attacker_seed=attacker_seed, attacker_sha256=hashes[attacker],
                            defender_sha256=hashes[defender]))
    return records


@pytest.fixture
def failed_run(tmp_path, process_settings):
    torch.set_num_threads(1)
    hashes = {}
    for i, card in enumerate(_cards()):
        torch.manual_seed(i)
        model = create_model("digits-cnn", 10, card["head"], (0.3,), (0.37,))
        hashes[card["name"]] = save_member(tmp_path / "zoo" / DATASET / card["name"], model, card)["weights_sha256"]
    with ResultStore(tmp_path / "results") as store:
        store_in_runs(store, _records(hashes))
    return tmp_path


def test_a_failed_seed_and_a_failed_attacker_are_left_out_of_every_claim_and_named_first(failed_run):
    index = write_report(DATASET, failed_run / "results", failed_run / "zoo", failed_run / "out", margins=False)
    claims = pd.read_csv(failed_run / "out" / "tables" / "claims.csv").set_index("claim")
    attacks = load_results(DATASET, failed_run / "results", failed_run / "zoo").attacks
    failed = {FAILED_SEED: "", FAILED_ATTACKER: ""}
    kept = without_failed(attacks, failed)
    assert set(attacks["defender"]) - set(kept["defender"]) == {FAILED_SEED}
    assert FAILED_ATTACKER in set(attacks["attacker"]) - set(kept["attacker"])
    expected = evaluate_claims(kept, {}, DATASET).set_index("claim")
    for key, side in (("3bb", "treatment_units"), ("3wb", "treatment_units"), ("5wb", "reference_units")):
        assert claims.loc[key, side] == len(SEEDS) - 1, key  # the hinge side, which lost its failed seed
        assert claims.loc[key, "difference"] == pytest.approx(expected.loc[key, "difference"]), key
        assert claims.loc[key, "simultaneous_low"] == pytest.approx(expected.loc[key, "simultaneous_low"]), key
    assert claims.loc["3bb", "reference_units"] == len(SEEDS)  # unpaired: CE keeps every seed
    assert claims.loc["3bb", "left_out"] == f"{FAILED_ATTACKER}, {FAILED_SEED}"
    assert claims.loc["3wb", "left_out"] == FAILED_SEED  # white-box: no attacker of its own
    assert "left out as failed trainings: ce-s101, hinge-d1-s2" in claims.loc["3bb", "reason"]
    for page in (index.read_text(), (index.parent / "report.md").read_text()):
        first = page.index("Failed training, left out of every claim")
        assert first < page.index("Results from") and FAILED_SEED in page[first:first + 800]
        assert FAILED_ATTACKER in page[first:first + 800]
