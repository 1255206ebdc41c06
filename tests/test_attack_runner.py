"""Attack runners on a trained digits zoo: matrix shape, resume, flags, peer agreement;
every cell an attack record in the results folder's store."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from robench.errors import UserError
from robench.evaluate.attack_runner import AttackPlan, parse_eps, run_attacks
from robench.store import AttackRecord, FlagRecord, ResultStore
from robench.zoo import list_members

EPS = (0.0, 0.1, 0.2)
N = 120


@pytest.fixture(scope="module")
def matrix(digits_zoo, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    plan = AttackPlan("blackbox", eps=EPS, attacker="all", num_samples=N)
    rows, flags = run_attacks("digits", plan, digits_zoo, results, "cpu")
    return results, rows, flags


def test_matrix_has_every_cell(matrix, digits_zoo):
    _, rows, _ = matrix
    names = {c["name"] for c in list_members(digits_zoo, "digits")}
    cells = {(r.attacker, r.defender, r.attack, r.eps) for r in rows}
    assert cells == {(a, d, k, e) for a in names for d in names for k in ("fgsm", "ifgsm") for e in EPS}
    assert all(r.n == N for r in rows)
    diagonal = [r for r in rows if r.attacker == r.defender]
    assert {r.mode for r in diagonal} == {"whitebox"}
    assert {r.mode for r in rows if r.attacker != r.defender} == {"blackbox"}


def test_eps0_is_clean_and_accuracies_are_counts(matrix):
    _, rows, _ = matrix
    for r in rows:
        assert r.accuracy == r.correct / r.n
        if r.eps == 0:
            assert r.correct == r.clean_correct


def test_whitebox_run_reuses_the_matrix_diagonal(matrix, digits_zoo):
    results, _, _ = matrix
    plan = AttackPlan("whitebox", eps=EPS, num_samples=N)
    rows, flags = run_attacks("digits", plan, digits_zoo, results, "cpu")
    assert {r.mode for r in rows} == {"sanity"}  # only the ε = 1 cells were new
    kinds = {f.flag for f in flags}
    assert kinds == {"monotone_in_eps", "eps0_is_clean", "ifgsm_not_above_fgsm",
                     "whitebox_not_above_transfer", "large_eps_to_chance", "gradient_saturation"}
    with ResultStore(results) as store:
        assert [f.flag for f in store.records(FlagRecord)] == [f.flag for f in flags]
    again, _ = run_attacks("digits", plan, digits_zoo, results, "cpu")
    assert again == []


def test_force_recomputes_identically(matrix, digits_zoo):
    results, rows, _ = matrix
    plan = AttackPlan("blackbox", attacks=("fgsm",), eps=EPS, attacker="ce-s100", num_samples=N, force=True)
    redone, _ = run_attacks("digits", plan, digits_zoo, results, "cpu")
    before = {(r.attacker, r.defender, r.eps): r.correct for r in rows if r.attack == "fgsm"}
    assert redone and all(before[(r.attacker, r.defender, r.eps)] == r.correct for r in redone)
    stored = ResultStore(results).records(AttackRecord)
    cells = [r.cell for r in stored]
    assert len(cells) == len(set(cells))  # replaced, not duplicated
    assert {r.cell: r.correct for r in stored if r.attacker == "ce-s100" and r.attack == "fgsm" and r.mode == "blackbox"} == {
        r.cell: r.correct for r in redone}


def test_default_blackbox_attackers_are_the_zoos_attackers(digits_zoo, tmp_path):
    plan = AttackPlan("blackbox", attacks=("fgsm",), eps=(0.1,), num_samples=50)
    rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    assert {r.attacker for r in rows} == {"ce-s100"}
    defenders = {c["name"] for c in list_members(digits_zoo, "digits") if c["role"] == "defender"}
    assert {r.defender for r in rows} == defenders and "ce-s100" not in defenders


@pytest.mark.parametrize("backend", ["torchattacks", "art"])
@pytest.mark.parametrize("attack", ["fgsm", "ifgsm"])
def test_native_agrees_with_peers_on_a_trained_member(digits_zoo, tmp_path, backend, attack):
    eps = (0.05, 0.1, 0.2)
    counts = {}
    for name in ("native", backend):
        plan = AttackPlan("whitebox", attacks=(attack,), eps=eps, defenders=["1toN-sym-d4-s0"],
                          backend=name, num_samples=200)
        rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path / name, "cpu")
        counts[name] = {r.eps: r.correct for r in rows if r.mode == "whitebox"}
    assert counts["native"] == counts[backend]
    assert counts["native"][0.2] < counts["native"][0.05]  # the attack bites


def test_schedule_overrides_reach_the_peers_ifgsm_only(digits_zoo, tmp_path):
    counts = {}
    for name in ("native", "torchattacks"):
        plan = AttackPlan("whitebox", eps=(0.05, 0.1), defenders=["ce-s0"], backend=name, num_samples=40,
                          steps=3, step_size=0.02)
        rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path / name, "cpu")
        counts[name] = {(r.attack, r.eps): r.correct for r in rows if r.mode == "whitebox"}
    assert counts["native"] == counts["torchattacks"] and len(counts["native"]) == 4


def test_flags_judge_only_rows_on_the_zoo_weights_now(digits_zoo, tmp_path):
    """Records of earlier weights of a member (a retrained member's old key) stay in the
    store but no longer count in the flags, nor do older runs of a cell."""
    plan = AttackPlan("blackbox", attacks=("fgsm",), eps=EPS, attacker="ce-s100", num_samples=40)
    rows, flags = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    assert all(f.passed for f in flags if f.flag == "monotone_in_eps")
    rising = {0.0: 0, 0.1: 1, 0.2: 40}  # accuracy rising with ε: monotone_in_eps would fail on these
    earlier = [dataclasses.replace(r, defender_sha256="0" * 64, correct=rising[r.eps]) for r in rows]
    older_run = [dataclasses.replace(r, split_hash="0" * 64, correct=rising[r.eps]) for r in rows]
    with ResultStore(tmp_path) as store:
        current = store.records(AttackRecord)
        store.replace_all(AttackRecord, earlier + older_run + current)  # the current records stored last
    again, flags_now = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    assert again == []  # every cell is done
    assert [(f.flag, f.passed, f.scope, f.detail) for f in flags_now] == [
        (f.flag, f.passed, f.scope, f.detail) for f in flags]


def test_parse_eps():
    assert parse_eps("0.1,0,8/255") == [0.0, 8 / 255, 0.1]
    assert parse_eps("1.5") == [1.5]  # an L2 budget; each attack checks its norm's range
    for bad, message in (("-0.1", "eps"), ("nan", "eps"), ("inf", "eps"), ("abc", "not a number"), ("", "no epsilon")):
        with pytest.raises(UserError, match=message):
            parse_eps(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eps", "-0.1"], "-0.1"),
        (["--eps", "2"], "2"),
        (["--eps", "x"], "'x' is not a number"),
        (["--defenders", "nobody"], "unknown defender 'nobody'"),
        (["--attacks", "cw"], "unknown attack 'cw'"),
        (["--eps="], "no epsilon given"),
        (["--attacks", "fgsm", "--queries", "5"], "no attack of --attacks fgsm takes --queries"),
        (["--attacks", "pgd,fgm"], "mixes the norms"),
        (["--attacks", "apgd-dlr", "--attack-loss", "cw"], "ascends its own dlr loss"),
        (["--attacks", "fgm", "--eps", "9"], "eps must be in [0, 8]"),
        (["--attack-loss", "mse"], "unknown attack loss 'mse'"),
        (["--backend", "foolbox"], "unknown attack backend 'foolbox'"),
        (["--steps", "0"], "--steps"),
        (["--attacks", "fgsm", "--steps", "5"], "no attack of --attacks fgsm takes --steps"),
    ],
)
def test_cli_user_errors(digits_zoo, tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "robench.cli", "attack", "--whitebox", "--dataset", "digits",
         "--zoo-dir", str(digits_zoo), "--results-dir", str(tmp_path), "--num-samples", "10", *args],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_schedule_overrides_reach_ifgsm_only(digits_zoo, tmp_path):
    plan = AttackPlan("whitebox", eps=(0.0, 0.1), defenders=("ce-s0",), num_samples=20, steps=3, step_size=0.02)
    rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    schedules = {(r.attack, r.eps): (r.steps, r.step_size) for r in rows if r.mode == "whitebox"}
    assert schedules == {("fgsm", 0.0): (1, 0.0), ("fgsm", 0.1): (1, 0.1),
                         ("ifgsm", 0.0): (3, 0.02), ("ifgsm", 0.1): (3, 0.02)}
    assert {(r.attack, r.schedule) for r in rows if r.mode == "whitebox"} == {
        ("fgsm", "default"), ("ifgsm", "steps 3, step 0.02")}


def test_attack_loss_model_runs_on_the_members_training_loss(digits_zoo, tmp_path):
    plan = AttackPlan("whitebox", attacks=("fgsm",), eps=(0.0, 0.2), defenders=("1toN-zero-d1-s0", "ce-s0"),
                      attack_loss="model", num_samples=40)
    rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    swept = [r for r in rows if r.mode == "whitebox"]
    assert {(r.defender, r.eps) for r in swept} == {(d, e) for d in plan.defenders for e in plan.eps}
    assert all(r.attack_loss == "model" and r.coupled_batch == 40 for r in rows)  # the whole 40-image chunk
    assert all(r.correct <= r.clean_correct for r in swept if r.eps > 0)
    assert any(r.correct < r.clean_correct for r in swept if r.eps > 0)
    # the loss couples the samples of a chunk, so another chunk size is another cell
    halves, flags = run_attacks("digits", dataclasses.replace(plan, chunk_size=20), digits_zoo, tmp_path, "cpu")
    assert {(r.defender, r.eps) for r in halves if r.mode == "whitebox"} == {
        (r.defender, r.eps) for r in swept}
    assert all(r.coupled_batch == 20 for r in halves)
    assert any("(batch 20)" in f.scope for f in flags) and any("(batch 40)" in f.scope for f in flags)


def test_a_whitebox_cell_at_eps_1_does_not_stand_in_for_the_sanity_cell(digits_zoo, tmp_path):
    """A white-box IFGSM cell at ε = 1 on ≤ 256 samples has every key field of the sanity
    cell but its experiment: both are stored, and the sanity flag is computed."""
    plan = AttackPlan("whitebox", attacks=("ifgsm",), eps=(0.0, 1.0), defenders=("ce-s0",), num_samples=16)
    rows, flags = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    assert sorted(r.mode for r in rows if r.eps == 1.0) == ["sanity", "whitebox"]
    assert "large_eps_to_chance" in {f.flag for f in flags}


def test_empty_zoo_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="zoo in .* is empty"):
        run_attacks("digits", AttackPlan("whitebox"), tmp_path / "zoo", tmp_path, "cpu")


def test_defenders_evaluate_clean_once_and_reuse_it_at_eps0(digits_zoo, digits, tmp_path):
    """Every defender sees the clean chunk once for the whole matrix, and each attacker's
    ε > 0 adversarials once per attack; the ε = 0 cells (adversarial == clean) reuse the
    clean count."""
    import torch

    from robench.evaluate.attack_runner import run_attack_plan
    from robench.evaluate.members import load_members

    members = load_members(digits_zoo, "digits", None, torch.device("cpu"))
    evaluated: dict[str, int] = {}

    def count_rows(name):
        def hook(module, inputs, output):
            if not torch.is_grad_enabled():  # evaluation, not an attack's gradient pass
                evaluated[name] = evaluated.get(name, 0) + len(inputs[0])
        return hook

    for member in members:
        member.model.register_forward_hook(count_rows(member.name))
    plan = AttackPlan("blackbox", eps=(0.0, 0.1), attacker="all", num_samples=N)
    rows, _ = run_attack_plan(plan, digits, members, ResultStore(tmp_path))
    attacks = len(plan.attacks)
    assert evaluated == {m.name: N * (1 + attacks * len(members)) for m in members}
    assert all(r.correct == r.clean_correct for r in rows if r.eps == 0)


def test_finished_blocks_are_stored_when_a_plan_stops_early(digits_zoo, digits, tmp_path, monkeypatch):
    """Each finished (attacker, attack) block is one transaction: an interrupt in the
    third block leaves the first two stored, whole, and nothing of the third."""
    import torch

    from robench.evaluate import attack_runner
    from robench.evaluate.members import load_members

    members = load_members(digits_zoo, "digits", None, torch.device("cpu"))
    original, calls = attack_runner._attack_cell_block, []

    def stop_at_the_third_block(*args, **kwargs):
        calls.append(args[3].name)
        assert len(store.records(AttackRecord)) == (len(calls) - 1) * 2 * len(members)  # earlier blocks stored
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(attack_runner, "_attack_cell_block", stop_at_the_third_block)
    store = ResultStore(tmp_path)
    plan = AttackPlan("blackbox", attacks=("fgsm",), eps=(0.0, 0.1), attacker="all", num_samples=40)
    with pytest.raises(KeyboardInterrupt):
        attack_runner.run_attack_plan(plan, digits, members, store)
    stored = store.records(AttackRecord)
    assert {r.attacker for r in stored} == set(calls[:2])
    assert len(stored) == 2 * 2 * len(members)  # two attackers × two ε × every defender


def test_records_name_their_run(matrix):
    """Every record of the matrix carries the run id of its stored configuration."""
    import json

    from robench.store import RunRecord

    results, rows, _ = matrix
    with ResultStore(results) as store:
        runs = {row["run_id"]: row for row in store.frame(RunRecord).to_dict("records")}
    run = runs[rows[0].run_id]
    assert {r.run_id for r in rows} == {rows[0].run_id}
    config = json.loads(run["config"])
    assert (config["kind"], config["mode"], config["attacker"], config["eps"], config["num_samples"]) == (
        "attack", "blackbox", "all", list(EPS), N)


def test_worst_case_records_the_ensemble_and_each_members_stage(digits_zoo, tmp_path):
    """White-box ``worst``: one record per ε with its budget and seed, one per member
    but the last (the robust accuracy after it, never rising along the ensemble), the
    ensemble at most the paper's attacks, and its masking flags computed."""
    eps = (0.0, 0.1, 0.2)
    plan = AttackPlan("whitebox", attacks=("fgsm", "ifgsm", "worst"), eps=eps, defenders=("ce-s0",), num_samples=60,
                      steps=5, queries=30, targets=2)
    rows, flags = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    rows = [r for r in rows if r.mode == "whitebox"]
    worst = {r.eps: r for r in rows if r.attack == "worst"}
    assert {(r.steps, r.restarts, r.queries, r.attack_seed, r.schedule) for r in worst.values()} == {
        (5, 1, 30, 0, "steps 5, step default, queries 30, targets 2")}
    stages = ["fgsm", "ifgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t"]
    for e in eps:
        after = [next(r.correct for r in rows if r.attack == f"worst@{m}" and r.eps == e) for m in stages]
        assert after == sorted(after, reverse=True) and after[-1] >= worst[e].correct
        paper = min(r.correct for r in rows if r.attack in ("fgsm", "ifgsm") and r.eps == e)
        assert worst[e].correct <= after[1] <= paper  # the paper's attacks run first, per sample
    assert worst[0.0].correct == worst[0.0].clean_correct
    names = {f.flag for f in flags}
    assert {"gradient_free_not_stronger", "ce_dlr_gap", "gradient_saturation"} <= names


def test_worst_case_is_white_box_only(digits_zoo, tmp_path):
    with pytest.raises(UserError, match="run it with --whitebox"):
        run_attacks("digits", AttackPlan("blackbox", attacks=("worst",), eps=(0.1,), num_samples=10), digits_zoo,
                    tmp_path, "cpu")
    assert not (tmp_path / "results.sqlite").exists()


def test_l2_attacks_take_the_l2_grid_and_record_their_norm(digits_zoo, tmp_path):
    plan = AttackPlan("whitebox", attacks=("fgm",), defenders=("ce-s0",), num_samples=20)
    rows, _ = run_attacks("digits", plan, digits_zoo, tmp_path, "cpu")
    whitebox = [r for r in rows if r.mode == "whitebox"]
    assert sorted(r.eps for r in whitebox) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert {r.norm for r in whitebox} == {"l2"}


def test_a_whitebox_stage_dealt_to_one_process_per_core_stores_what_one_process_does(digits_zoo, tmp_path):
    """``robench run``'s worst-case stages deal the members to single-threaded processes
    writing one store: the records are those of one single-threaded process, each once,
    and the flags are computed over all of them."""
    import torch

    from robench.pipeline import _whitebox_on_every_core

    members = ["ce-s0", "hinge-d1-s0", "1toN-sym-d1-s0"]
    plan = AttackPlan("whitebox", attacks=("fgsm", "worst"), eps=(0.0, 0.1), num_samples=24, steps=3, queries=20,
                      targets=2)
    _, flags = _whitebox_on_every_core("digits", plan, members, digits_zoo, tmp_path / "dealt", "cpu", "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, alone_flags = run_attacks("digits", dataclasses.replace(plan, defenders=tuple(members)), digits_zoo,
                                     tmp_path / "alone", "cpu")
    finally:
        torch.set_num_threads(threads)

    def cells(folder):
        return sorted((r.mode, r.defender, r.attack, r.eps, r.correct) for r in ResultStore(folder).records(AttackRecord))

    assert cells(tmp_path / "dealt") == cells(tmp_path / "alone")
    assert {r.defender for r in ResultStore(tmp_path / "dealt").records(AttackRecord)} == set(members)
    assert sorted((f.flag, f.scope, f.passed) for f in flags) == sorted((f.flag, f.scope, f.passed) for f in alone_flags)
