"""Gradient-masking flags on hand-made attack records and zero-gradient counts on models
with a known answer (robench.evaluate.masking, docs/flags.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from factories import attack_record
from robench.attacks import create_attack_loss
from robench.evaluate import validity
from robench.evaluate.masking import (CE_DLR_GAP, MASKING_FLAGS, SATURATION_THRESHOLD, ce_dlr_gap, converged,
                                      gradient_free_not_stronger, masking_flag_names, saturation_flag,
                                      zero_gradient_fraction)
from robench.evaluate.validity import FLAGS, compute_flags, summarize_flags
from robench.store import FlagRecord


def _rec(attack, correct, eps=0.1, n=100, loss="ce", **fields):
    """A white-box record of defender ``a`` under ``attack`` (made as FGSM, then renamed:
    the factory needs an attack whose schedule it knows)."""
    return replace(attack_record("a", "a", "fgsm", eps, correct, clean=90, n=n), attack=attack, attack_loss=loss,
                   **fields)


def _rows(*records):
    return [r.as_dict() for r in records]


def _verdicts(flags):
    return [(f["scope"], f["passed"]) for f in flags]


# gradient_free_not_stronger


def test_gradient_free_within_one_point_of_best_gradient_passes():
    flags = gradient_free_not_stronger(_rows(
        _rec("square", 49, loss="margin"), _rec("pgd", 50), _rec("fgsm", 60), _rec("ifgsm", 55)))
    assert _verdicts(flags) == [("native a eps 0.1", True)]
    assert flags[0]["members"] == {"a"} and "pgd/ce 0.5000" in flags[0]["detail"]


def test_gradient_free_more_than_one_point_below_fails():
    flags = gradient_free_not_stronger(_rows(_rec("square", 48, loss="margin"), _rec("pgd", 50)))
    assert _verdicts(flags) == [("native a eps 0.1", False)]
    assert "2.00 points lower" in flags[0]["detail"]


@pytest.mark.parametrize("n, square, passed", [(200, 98, True), (200, 97, False), (1000, 490, True),
                                               (1000, 489, False)])
def test_gradient_free_tolerance_is_one_point_of_n(n, square, passed):
    flags = gradient_free_not_stronger(_rows(_rec("square", square, n=n, loss="margin"),
                                             _rec("pgd", n // 2, n=n)))
    assert [f["passed"] for f in flags] == [passed]


def test_best_gradient_attack_is_the_minimum_over_losses_and_apgd():
    rows = _rows(_rec("square", 45, loss="margin"), _rec("pgd", 50), _rec("apgd-dlr", 44, loss="dlr"),
                 _rec("ifgsm", 70, loss="cw"))
    flags = gradient_free_not_stronger(rows)
    assert _verdicts(flags) == [("native a eps 0.1", True)]
    assert "apgd-dlr/dlr 0.4400" in flags[0]["detail"]


def test_ensembles_are_no_gradient_attack():
    """The worst case includes Square itself: it is not the gradient side of the check."""
    flags = gradient_free_not_stronger(_rows(_rec("square", 45, loss="margin"), _rec("pgd", 50),
                                             _rec("worst", 30), _rec("aa", 30)))
    assert _verdicts(flags) == [("native a eps 0.1", False)]


def test_gradient_free_cells_are_kept_apart():
    """Square of another backend, precision, norm, sample count or ε meets no gradient attack."""
    square = _rec("square", 10, loss="margin")
    rows = _rows(_rec("pgd", 50), replace(square, backend="torchattacks"), replace(square, precision="bf16"),
                 replace(square, norm="l2"), replace(square, n=200), replace(square, eps=0.2))
    assert gradient_free_not_stronger(rows) == []
    both = rows + _rows(_rec("fgm", 50, norm="l2"), _rec("pgd", 50, backend="torchattacks"),
                        _rec("pgd", 50, precision="bf16"))
    assert _verdicts(gradient_free_not_stronger(both)) == [
        ("native/l2 a eps 0.1", False), ("native bf16 a eps 0.1", False), ("torchattacks a eps 0.1", False)]


def test_gradient_free_skips_eps0_and_cells_without_both_kinds():
    assert gradient_free_not_stronger(_rows(_rec("square", 80, eps=0.0, loss="margin"),
                                            _rec("pgd", 90, eps=0.0))) == []
    assert gradient_free_not_stronger(_rows(_rec("square", 10, loss="margin"))) == []
    assert gradient_free_not_stronger(_rows(_rec("pgd", 10))) == []


# converged


def _doubled(record, correct, **fields):
    return replace(record, correct=correct, **fields)


def test_doubled_steps_within_one_point_pass_and_beyond_fail():
    base = _rec("pgd", 50, steps=10, step_size=0.025)
    more = dict(steps=20, step_size=0.0125, schedule="steps 20, step default")  # another schedule label
    flags = converged(_rows(base, _doubled(base, 49, **more)))
    assert _verdicts(flags) == [
        ("pgd/ce/native a eps 0.1 steps 10 -> 20 (restarts 1) [default -> steps 20, step default]", True)]
    failed = converged(_rows(base, _doubled(base, 48, **more)))
    assert [f["passed"] for f in failed] == [False] and "2.00 points lower" in failed[0]["detail"]
    assert failed[0]["members"] == {"a"}


def test_doubled_restarts_compared_and_higher_accuracy_passes():
    base = _rec("apgd-ce", 50, steps=100, restarts=1)
    flags = converged(_rows(base, _doubled(base, 47, restarts=2), _doubled(base, 52, steps=200)))
    assert sorted(_verdicts(flags)) == [("apgd-ce/ce/native a eps 0.1 restarts 1 -> 2 (steps 100)", False),
                                        ("apgd-ce/ce/native a eps 0.1 steps 100 -> 200 (restarts 1)", True)]


def test_only_a_doubling_of_one_budget_part_is_compared():
    base = _rec("pgd", 50, steps=10)
    rows = _rows(base, _doubled(base, 10, steps=20, restarts=2), _doubled(base, 10, steps=30),
                 _doubled(base, 10, steps=10, step_size=0.5, schedule="steps default, step 0.5"))
    assert converged(rows) == []


def test_chains_of_doublings_give_one_flag_per_pair():
    base = _rec("ifgsm", 50, steps=10)
    flags = converged(_rows(base, _doubled(base, 50, steps=20), _doubled(base, 40, steps=40)))
    assert sorted(_verdicts(flags)) == [("ifgsm/ce/native a eps 0.1 steps 10 -> 20 (restarts 1)", True),
                                        ("ifgsm/ce/native a eps 0.1 steps 20 -> 40 (restarts 1)", False)]


@pytest.mark.parametrize("field, value", [("precision", "bf16"), ("backend", "torchattacks"), ("attack_loss", "cw"),
                                          ("attack", "ifgsm"), ("n", 200), ("eps", 0.2), ("coupled_batch", 256),
                                          ("attack_seed", 7), ("defender", "b")])
def test_doubled_runs_of_other_cells_are_not_compared(field, value):
    base = _rec("pgd", 50, steps=10)
    assert converged(_rows(base, _doubled(base, 10, steps=20, **{field: value}))) == []


def test_converged_skips_eps0():
    base = _rec("pgd", 90, eps=0.0, steps=10)
    assert converged(_rows(base, _doubled(base, 80, steps=20))) == []


def test_converged_scope_names_precision_norm_queries_and_seed():
    base = _rec("square", 50, loss="margin", norm="l2", precision="bf16", queries=5000, attack_seed=0, steps=1)
    flags = converged(_rows(base, _doubled(base, 50, restarts=2)))
    assert _verdicts(flags) == [("square/margin/native/l2 bf16 queries 5000 seed 0 a eps 0.1 restarts 1 -> 2 "
                                 "(steps 1)", True)]


# ce_dlr_gap


def test_ce_dlr_gap_boundary_and_which_is_lower():
    ce = _rec("apgd-ce", 50, steps=100)
    at_gap = ce_dlr_gap(_rows(ce, _rec("apgd-dlr", 50 + int(CE_DLR_GAP), loss="dlr", steps=100)))
    assert _verdicts(at_gap) == [("native a eps 0.1 (steps 100, restarts 1)", True)]
    assert "APGD-CE lower" in at_gap[0]["detail"]
    beyond = ce_dlr_gap(_rows(ce, _rec("apgd-dlr", 56, loss="dlr", steps=100)))
    assert [f["passed"] for f in beyond] == [False] and "6.00 points apart, APGD-CE lower" in beyond[0]["detail"]
    dlr_lower = ce_dlr_gap(_rows(ce, _rec("apgd-dlr", 40, loss="dlr", steps=100)))
    assert [f["passed"] for f in dlr_lower] == [False] and "APGD-DLR lower" in dlr_lower[0]["detail"]
    assert dlr_lower[0]["members"] == {"a"}


def test_ce_dlr_gap_pairs_the_same_norm_and_budget():
    rows = _rows(_rec("apgd-ce", 50, steps=100), _rec("apgd-dlr-l2", 90, loss="dlr", norm="l2", steps=100),
                 _rec("apgd-dlr", 90, loss="dlr", steps=200), _rec("apgd-t", 10, loss="dlr-targeted", steps=100),
                 _rec("apgd-ce", 50, steps=100, backend="torchattacks"),
                 _rec("apgd-dlr", 90, loss="dlr", steps=100, precision="bf16"))
    assert ce_dlr_gap(rows) == []
    l2 = ce_dlr_gap(rows + _rows(_rec("apgd-ce-l2", 88, norm="l2", steps=100)))
    assert _verdicts(l2) == [("native/l2 a eps 0.1 (steps 100, restarts 1)", True)]


def test_ce_dlr_gap_takes_the_strongest_record_of_each_side_and_skips_eps0():
    rows = _rows(_rec("apgd-ce", 70, steps=100), _rec("apgd-ce", 52, steps=100, attack_seed=1),
                 _rec("apgd-dlr", 50, loss="dlr", steps=100))
    assert [f["passed"] for f in ce_dlr_gap(rows)] == [True]
    assert ce_dlr_gap(_rows(_rec("apgd-ce", 90, eps=0.0), _rec("apgd-dlr", 70, eps=0.0, loss="dlr"))) == []


# hooked into compute_flags


def _sound_masking_rows():
    pgd = _rec("pgd", 50, steps=10)
    return [_rec("fgsm", 60), _rec("ifgsm", 52), pgd, _doubled(pgd, 50, steps=20),
            _rec("square", 51, loss="margin"), _rec("apgd-ce", 48, steps=100),
            _rec("apgd-dlr", 50, loss="dlr", steps=100)]


def test_compute_flags_adds_the_record_based_masking_flags():
    flags = compute_flags(_sound_masking_rows())
    names = {f["flag"] for f in flags}
    assert set(MASKING_FLAGS) - names == {"gradient_saturation"}  # computed on models, not records
    assert all(f["passed"] for f in flags), [f for f in flags if not f["passed"]]


def test_masking_ignores_transfer_and_sanity_records():
    rows = _sound_masking_rows()
    transfer = [replace(r, attacker="b", mode="blackbox", correct=0) for r in rows]
    sanity = [replace(r, mode="sanity", eps=1.0, correct=0) for r in rows if r.attack == "square"]
    masking = [f for f in compute_flags(rows + transfer + sanity) if f["flag"] in MASKING_FLAGS]
    assert masking and all(f["passed"] for f in masking)


def test_failed_masking_flag_sorts_first_and_is_summarized():
    rows = _sound_masking_rows()
    rows[4] = replace(rows[4], correct=40)  # square 8 points below APGD-CE
    flags = compute_flags(rows)
    assert (flags[0]["flag"], flags[0]["passed"]) == ("gradient_free_not_stronger", False)
    text = summarize_flags([FlagRecord(run_id="r", flag=f["flag"], passed=f["passed"], scope=f["scope"],
                                       detail=f["detail"]) for f in flags])
    assert "gradient_free_not_stronger   0/1 passed" in text and "FAILED gradient_free_not_stronger" in text


def test_masking_flag_names_are_listed_and_in_flags():
    assert masking_flag_names() == MASKING_FLAGS == (
        "gradient_free_not_stronger", "converged", "ce_dlr_gap", "gradient_saturation")
    assert FLAGS[-len(MASKING_FLAGS):] == MASKING_FLAGS and len(set(FLAGS)) == len(FLAGS)


# zero_gradient_fraction and gradient_saturation


class Clamped(nn.Module):
    """Logits (h, −h, 0) with h = max(mean pixel − 0.5, 0): every input gradient is
    exactly zero where the mean pixel is below 0.5, and non-zero (CE, CW) above it."""

    def forward(self, x):
        h = torch.clamp(x.flatten(1).mean(1, keepdim=True) - 0.5, min=0.0)  # (B, 1)
        return torch.cat([h, -h, torch.zeros_like(h)], dim=1)  # (B, 3)


class Threshold(nn.Module):
    """A hard threshold: no differentiable path from the input at all."""

    def forward(self, x):
        h = (x.flatten(1).mean(1, keepdim=True) > 0.5).float()
        return torch.cat([h, -h, torch.zeros_like(h)], dim=1)


def _images(low: int, high: int):
    """``low`` images of mean 0.25 and ``high`` of mean 0.75 (1×4×4), interleaved; labels 0."""
    x = torch.full((low + high, 1, 4, 4), 0.75)
    x[torch.randperm(low + high, generator=torch.Generator().manual_seed(0))[:low]] = 0.25
    return x, torch.zeros(low + high, dtype=torch.long)


@pytest.mark.parametrize("loss", ["ce", "cw"])
def test_clamped_logits_give_zero_gradients_exactly_where_expected(loss):
    x, y = _images(3, 5)
    assert zero_gradient_fraction(Clamped(), x, y, loss) == pytest.approx(3 / 8)
    assert zero_gradient_fraction(Clamped(), x, y, create_attack_loss(loss), batch_size=3) == pytest.approx(3 / 8)


def test_chunks_of_256_cover_every_sample():
    x, y = _images(300, 300)
    assert zero_gradient_fraction(Clamped(), x, y, "ce") == pytest.approx(0.5)


def test_linear_model_has_no_zero_gradient_under_ce_and_threshold_only_zeros():
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(50, 1, 4, 4), torch.randint(0, 3, (50,))
    assert zero_gradient_fraction(linear, x, y, "ce") == 0.0
    assert all(p.grad is None for p in linear.parameters())  # gradient w.r.t. the input only
    assert zero_gradient_fraction(Threshold(), x, y, "ce") == 1.0


class FirstPixels(nn.Module):
    """Logits 10 × the first three pixels."""

    def forward(self, x):
        return 10 * x.flatten(1)[:, :3]  # (B, 3)


def test_model_loss_of_a_hinge_is_flat_where_its_margin_is_met():
    """Squared hinge on a model whose logits are 10 × the first three pixels: images
    lighting their own class's pixel meet the margin (zero gradient), grey ones do not."""

    def hinge(logits, labels, reduction="none"):
        true = logits.gather(1, labels[:, None])
        value = F.relu(1 - (true - logits)).pow(2).sum(1) - 1  # (B,): the own class adds 1
        return value if reduction == "none" else value.mean()

    model = FirstPixels()
    x = torch.full((6, 1, 4, 4), 0.5)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    x[:4] = 0.0
    x[torch.arange(4), 0, 0, y[:4]] = 1.0  # 4 images light their own class only: margin 10
    assert zero_gradient_fraction(model, x, y, "model", model_loss=hinge) == pytest.approx(4 / 6)


def test_eval_mode_during_and_training_flags_restored_after():
    """Dropout with p = 1 zeroes every gradient in training mode; in eval mode it is the
    identity. Each module's own flag comes back, also a submodule left in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(p=1.0), nn.Flatten(), nn.Linear(16, 3), nn.Sequential(nn.Identity()))
    model.train()
    model[3].eval()
    x, y = torch.rand(10, 1, 4, 4), torch.randint(0, 3, (10,))
    assert zero_gradient_fraction(model, x, y, "ce") == 0.0
    assert [m.training for m in model.modules()] == [True, True, True, True, False, False]


def test_saturation_flag_threshold_and_shape():
    assert SATURATION_THRESHOLD == 0.01
    passed = saturation_flag("ce-s0", "ce", 0.01, 360)
    assert passed == {"flag": "gradient_saturation", "passed": True, "scope": "ce ce-s0",
                      "detail": "1.00% of 360 test points have an exactly zero input gradient of the ce loss "
                                "(threshold 1%)", "members": frozenset({"ce-s0"})}
    assert set(passed) == set(validity._flag("x", True, "s", "d", "m"))
    assert saturation_flag("hinge-d1-s0", "model", 0.0101, 360)["passed"] is False
    assert saturation_flag("hinge-d1-s0", "model", 0.864, 360)["scope"] == "model hinge-d1-s0"


# ---------------------------------------------------------------- a worst-case ensemble's own run

def _worst_run(after: dict[str, int], eps: float = 0.1, n: int = 100, **fields):
    """White-box records of one ``worst`` run: ``after`` member → correct after it (the
    last member's count is the ensemble's own record)."""
    last = "square"
    return _rows(*[attack_record("m", "m", "worst" if member == last else f"worst@{member}", eps=eps,
                                 correct=correct, n=n, **fields) for member, correct in after.items()])


def test_ensemble_flags_read_the_members_increments():
    from robench.evaluate.masking import ensemble_flags

    after = {"fgsm": 80, "ifgsm": 70, "pgd": 60, "apgd-ce": 55, "apgd-dlr": 50, "apgd-t": 48, "square": 47}
    flags = {f["flag"]: f for f in ensemble_flags(_worst_run(after))}
    assert flags["gradient_free_not_stronger"]["passed"]  # Square broke 1 point: the tolerance itself
    assert flags["ce_dlr_gap"]["passed"] and "55" not in flags["ce_dlr_gap"]["scope"]  # DLR broke 5 points
    assert flags["ce_dlr_gap"]["members"] == frozenset({"m"})
    masked = {**after, "apgd-dlr": 49, "apgd-t": 47, "square": 45}
    flags = {f["flag"]: f for f in ensemble_flags(_worst_run(masked))}
    assert not flags["gradient_free_not_stronger"]["passed"]  # Square found 2 points every gradient attack missed
    assert not flags["ce_dlr_gap"]["passed"]  # DLR found 6 points CE missed
    assert ensemble_flags(_worst_run(after, eps=0.0)) == []  # ε = 0: nothing to judge


def test_ensemble_runs_at_twice_the_steps_are_compared_by_converged():
    base = _worst_run({"apgd-t": 50, "square": 48})
    doubled = _worst_run({"apgd-t": 49, "square": 46}, steps=100, schedule="steps 100, step default")
    base = [dict(r, steps=50) for r in base]
    flags = [f for f in converged(base + doubled) if f["flag"] == "converged"]
    assert len(flags) == 1 and flags[0]["passed"] is False and "worst/" in flags[0]["scope"]  # 2 points lower
