"""The attack engine: invariants every registered attack keeps, the ε-sweep strategies,
PGD's relation to IFGSM, and the per-sample worst case of the ensembles.

Offline, CPU, one thread; the model is a small conv net trained on sklearn's digits
(``trained`` of conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from robench.attacks import ATTACKS, ENSEMBLES, KURAKIN_STEP_SIZE, create_attack, kurakin_steps
from robench.attacks.prefix_sweep import branch_step
from robench.errors import UserError

# Small budgets: the invariants do not depend on them, the test time does.
QUICK = {"steps": 5, "restarts": 2, "queries": 40, "targets": 2}
LINF_EPS, L2_EPS = [0.0, 0.05, 0.2], [0.0, 0.5, 1.5]


def _quick(name: str, **extra):
    taken = getattr(ATTACKS.get(name), "OPTIONS", ())
    return create_attack(name, **{k: v for k, v in QUICK.items() if k in taken}, **extra)


def _grid(attack) -> list[float]:
    return LINF_EPS if attack.norm.name == "linf" else L2_EPS


def _correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_stays_in_its_ball_and_leaves_the_input(trained, name):
    model, x, y = trained
    x, y = x[:48], y[:48]
    before = x.clone()
    attack = _quick(name)
    advs = attack.sweep(model, x, y, _grid(attack))
    assert torch.equal(x, before)
    for eps, adv in zip(_grid(attack), advs):
        assert adv.shape == x.shape and adv.dtype == x.dtype
        assert adv.min() >= 0 and adv.max() <= 1
        size = attack.norm.size(adv - x)  # (N,)
        assert (size <= eps * (1 + 1e-6) + 1e-7).all(), (name, eps, size.max().item())
        if eps == 0:
            assert torch.equal(adv, x)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_treats_a_sample_alone_as_in_a_batch(trained, name):
    """A sample's adversarial does not depend on its batch-mates (per-sample random
    streams, per-sample step sizes): exactly for L∞ on the CPU, to rounding for L2 (a
    batched matrix product rounds differently from a single row)."""
    model, x, y = trained
    x, y = x[:12], y[:12]
    attack = _quick(name)
    eps = _grid(attack)[1]
    batched = attack(model, x, y, eps)
    alone = torch.cat([attack(model, x[i:i + 1], y[i:i + 1], eps) for i in range(len(x))])
    if attack.norm.name == "linf":
        assert torch.equal(batched, alone)
    else:
        assert torch.allclose(batched, alone, atol=1e-5)
    assert torch.equal(_correct(model, batched, y), _correct(model, alone, y))


@pytest.mark.parametrize("name", ["pgd", "apgd-ce", "square", "worst"])
def test_random_attacks_record_their_seed_and_repeat_with_it(trained, name):
    model, x, y = trained
    x, y = x[:24], y[:24]
    first, again = _quick(name, seed=3), _quick(name, seed=3)
    assert first.budget(0.1).seed == 3 and _quick(name).budget(0.1).seed == 0
    assert torch.equal(first(model, x, y, 0.1), again(model, x, y, 0.1))
    assert create_attack("ifgsm", seed=3).budget(0.1).seed is None  # deterministic: no seed to record


def test_pgd_without_random_start_is_ifgsm_bit_for_bit(trained):
    """With IFGSM's step size and step count and no random start, PGD is IFGSM; its
    ε-sweep then qualifies for prefix sharing and equals per-ε calls."""
    model, x, y = trained
    for eps in (0.05, 0.1, 0.2):
        pgd = create_attack("pgd", random_start=False, steps=kurakin_steps(eps), step_size=KURAKIN_STEP_SIZE)
        assert torch.equal(pgd(model, x, y, eps), create_attack("ifgsm")(model, x, y, eps))
    pgd = create_attack("pgd", random_start=False, steps=20, step_size=KURAKIN_STEP_SIZE)
    grid = [0.0, 0.02, 0.05, 0.1]
    swept = pgd.sweep(model, x, y, grid)
    shared = 20 + sum(20 - branch_step(e, 20, KURAKIN_STEP_SIZE) for e in grid[1:])
    assert pgd.last_sweep_image_steps == len(x) * shared  # one trunk and its branches
    for eps, adv in zip(grid, swept):
        assert torch.equal(adv, pgd(model, x, y, eps))


def test_pgd_with_its_own_step_rule_stacks_and_random_pgd_goes_per_eps(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    grid = [0.05, 0.1]
    stacked = create_attack("pgd", random_start=False, steps=6)  # α = 2.5 ε / 6 differs per ε
    swept = stacked.sweep(model, x, y, grid)
    assert stacked.last_sweep_image_steps == len(x) * 6 * len(grid)
    for eps, adv in zip(grid, swept):
        assert torch.equal(adv, stacked(model, x, y, eps))
    random = create_attack("pgd", steps=6, restarts=2)
    swept = random.sweep(model, x, y, grid)
    for eps, adv in zip(grid, swept):
        assert torch.equal(adv, random(model, x, y, eps))


def test_restarts_attack_only_the_samples_left_robust(trained):
    """A second restart runs on the samples the first did not fool, and keeps every
    sample the first fooled as it was."""
    model, x, y = trained
    one = create_attack("pgd", steps=3)
    two = create_attack("pgd", steps=3, restarts=2)
    first = one(model, x, y, 0.1)
    both = two(model, x, y, 0.1)
    fooled = ~_correct(model, first, y)
    assert torch.equal(both[fooled], first[fooled])
    assert _correct(model, both, y).sum() <= _correct(model, first, y).sum()
    assert two._grad_rows == 3 * (len(x) + int((~fooled).sum()))


@pytest.mark.parametrize("ensemble", ["worst", "aa"])
def test_the_ensemble_is_the_per_sample_worst_case_over_its_members(trained, ensemble):
    """A point counts as robust under the ensemble at ε only if every member, run on its
    own at that ε, fails on it (members are per-sample, so running one on the survivors
    gives each point what it gets alone); accuracy never rises with ε."""
    model, x, y = trained
    x, y = x[:40], y[:40]
    grid = [0.0, 0.05, 0.1, 0.15]
    worst = _quick(ensemble)
    advs = worst.sweep(model, x, y, grid)
    robust = [_correct(model, adv, y) for adv in advs]
    for eps, ok in zip(grid, robust):
        for member in worst.members:
            assert not (ok & ~_correct(model, member(model, x, y, eps), y)).any(), (member.name, eps)
    for smaller, larger in zip(robust, robust[1:]):
        assert not (larger & ~smaller).any()  # broken at ε: broken at every larger ε
    assert [m for m, _, _ in ENSEMBLES[ensemble]] == [m.name for m in worst.members]


def test_the_ensemble_counts_the_robust_points_after_each_member(trained):
    model, x, y = trained
    worst = _quick("worst")
    grid = [0.05, 0.1]
    advs = worst.sweep(model, x, y, grid)
    for eps, adv in zip(grid, advs):
        after = [worst.robust_after.get((eps, k), 0) for k in range(len(worst.members))]
        assert after == sorted(after, reverse=True)  # each member only removes points
        assert after[-1] == int(_correct(model, adv, y).sum())
    assert worst.stage_names() == [f"worst@{m.name}" for m in worst.members[:-1]]


def test_ensemble_budget_and_options(trained):
    worst = create_attack("worst")
    budget = worst.budget(0.1)
    assert (budget.steps, budget.restarts, budget.queries, budget.seed) == (50, 1, 500, 0)
    assert create_attack("worst", steps=100).budget(0.1).steps == 100  # the converged flag doubles it
    aa = create_attack("aa")
    assert [m.budget(0.1).steps for m in aa.members[:2]] == [100, 100] and aa.members[1].targets == 9
    with pytest.raises(UserError, match="takes no step_size"):
        create_attack("worst", step_size=0.1)
    with pytest.raises(UserError, match="'worst-l2' takes no queries"):
        create_attack("worst-l2", queries=10)
    with pytest.raises(UserError, match="takes no queries"):
        create_attack("fgsm", queries=10)


def test_norm_ranges_are_user_errors(trained):
    model, x, y = trained
    with pytest.raises(UserError, match=r"eps must be in \[0, 1\]"):
        create_attack("pgd")(model, x, y, 1.5)
    fgm = create_attack("fgm")
    fgm(model, x[:4], y[:4], 1.5)  # an L2 budget above 1 is fine ...
    with pytest.raises(UserError, match=r"eps must be in \[0, 8\]"):
        fgm(model, x[:4], y[:4], 9.0)  # ... up to √64 for 8×8 images


def test_the_ensemble_spends_nothing_at_eps_zero(trained):
    """At ε = 0 the ball is the input itself: no member runs, and the clean points count
    as robust after every member."""
    model, x, y = trained
    worst = _quick("worst")
    (adv,) = worst.sweep(model, x, y, [0.0])
    assert torch.equal(adv, x) and worst.last_sweep_image_steps == 0
    clean = int(_correct(model, x, y).sum())
    assert [worst.robust_after[(0.0, k)] for k in range(len(worst.members))] == [clean] * len(worst.members)
