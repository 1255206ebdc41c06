"""The generalization and noisy-label experiments: subsets, label noise, the 80 % stop
rule, resumable runs and summaries. Offline and CPU-only; real runs use tiny plans and
tiny train specs through monkeypatch."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from scipy import stats as scipy_stats
from torch import nn

import robench.experiments.common as common
import robench.train.members as members_module
from robench.config import TrainSpec
from robench.data.base import Split
from robench.data.noise import flipped_indices, noisy_labels
from robench.data.subsets import generalization_subset, paper_fractions
from robench.errors import UserError
from robench.experiments import (
    ExperimentPlan,
    experiment_members,
    format_summary,
    plan_for,
    run_generalization,
    run_noise,
    summarize,
)
from robench.experiments.common import experiment_spec
from robench.train.trainer import train_model

ZOO_TOML = Path(__file__).resolve().parent.parent / "zoo" / "digits.toml"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread (and do not fight other processes for
    cores through OpenMP); the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ subsets


def test_paper_fractions_double_from_an_eighth_percent_to_all():
    fr = paper_fractions()
    assert fr[0] == 0.00125 and fr[-2] == 0.64 and fr[-1] == 1.0 and len(fr) == 11
    assert all(b == pytest.approx(2 * a) for a, b in zip(fr[:-2], fr[1:-1]))
    assert round(fr[0] * 54000) == 68  # the paper's smallest MNIST subset


@pytest.mark.parametrize("num_train", [1, 10, 1293, 54000])
@pytest.mark.parametrize("fraction", [0.00125, 0.0625, 0.3, 1.0])
def test_subset_sizes_are_exact(num_train, fraction):
    index = generalization_subset(num_train, fraction, repeat=0)
    assert len(index) == max(1, round(fraction * num_train))
    assert index.dtype == torch.int64
    assert torch.equal(index, index.sort().values) and len(index.unique()) == len(index)
    assert 0 <= int(index.min()) and int(index.max()) < num_train  # train indices only


def test_subsets_are_reproducible_and_repeats_differ():
    a = generalization_subset(1293, 0.125, repeat=2)
    assert torch.equal(a, generalization_subset(1293, 0.125, repeat=2))
    assert not torch.equal(a, generalization_subset(1293, 0.125, repeat=3))
    assert not torch.equal(a, generalization_subset(1293, 0.125, repeat=2, seed=1))
    assert torch.equal(generalization_subset(1293, 1.0, 4), torch.arange(1293))
    with pytest.raises(UserError):
        generalization_subset(1293, 0.0, 0)


def test_subsets_are_disjoint_from_test_by_pixels(digits):
    test_images = {bytes(x.numpy().tobytes()) for x in digits.test.x}
    for fraction in (0.0625, 0.5, 1.0):
        index = generalization_subset(len(digits.train), fraction, repeat=1)
        subset = digits.train.subset(index)
        assert torch.equal(subset.x, digits.train.x[index])
        assert not any(bytes(x.numpy().tobytes()) in test_images for x in subset.x)


# ------------------------------------------------------------------ label noise


@pytest.mark.parametrize("n", [7, 100, 1293])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8, 1.0])
def test_noise_rate_is_exact_and_every_flip_changes_the_label(n, rate):
    labels = torch.arange(n) % 10  # (N,)
    before = labels.clone()
    noisy = noisy_labels(labels, 10, rate, repeat=1)
    changed = noisy != labels
    assert int(changed.sum()) == round(rate * n)  # every flipped label differs
    assert torch.equal(changed.nonzero().flatten(), flipped_indices(n, rate, repeat=1))
    assert torch.equal(labels, before)  # input untouched
    assert int(noisy.min()) >= 0 and int(noisy.max()) < 10 and noisy.dtype == torch.int64


def test_noise_is_reproducible_and_repeats_differ():
    labels = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(0))
    a = noisy_labels(labels, 10, 0.4, repeat=0)
    assert torch.equal(a, noisy_labels(labels, 10, 0.4, repeat=0))
    assert not torch.equal(a, noisy_labels(labels, 10, 0.4, repeat=1))
    assert torch.equal(noisy_labels(labels, 10, 0.0, repeat=0), labels)


def test_noise_draws_every_other_class_uniformly():
    n, k = 20000, 5
    labels = torch.zeros(n, dtype=torch.long)
    noisy = noisy_labels(labels, k, 1.0, repeat=0)
    counts = torch.bincount(noisy, minlength=k)
    assert counts[0] == 0  # never the original class
    # chi-square against uniform over the K - 1 other classes
    p = scipy_stats.chisquare(counts[1:].numpy()).pvalue
    assert p > 1e-4


def test_noise_rejects_bad_values():
    with pytest.raises(UserError):
        noisy_labels(torch.tensor([0, 1, 2]), 10, 1.5, 0)
    with pytest.raises(UserError):
        noisy_labels(torch.tensor([0, 11]), 10, 0.5, 0)


# ------------------------------------------------------------------ the 80 % stop rule


def _toy_split(conflicting: bool) -> Split:
    """Two linearly separable classes of 2×2 images; ``conflicting`` duplicates every
    image with the other label, so accuracy can never exceed 0.5."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 2  # (64,)
    x = torch.randint(0, 60, (64, 1, 2, 2), generator=g) + 190 * y.view(-1, 1, 1, 1)
    if conflicting:
        x, y = torch.cat([x, x]), torch.cat([y, 1 - y])
    return Split(x.to(torch.uint8), y)


def _toy_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():  # start by calling everything class 0: accuracy 0.5
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, -1.0]))
    return model


def test_noise_run_stops_at_the_first_epoch_reaching_80_percent():
    spec = TrainSpec(epochs=50, lr=0.002, batch_size=16, stop_train_accuracy=0.8)
    result = train_model(_toy_model(), nn.CrossEntropyLoss(), _toy_split(False),
                         lambda x: x.float() / 255, spec, seed=0)
    accs = [h["train_accuracy"] for h in result.history]
    assert result.stop_reason == "train_accuracy"
    assert len(accs) >= 2 and all(a < 0.8 for a in accs[:-1]) and accs[-1] >= 0.8
    assert result.epochs == len(accs) < 50


def test_noise_run_hits_the_epoch_cap_when_80_percent_is_out_of_reach():
    spec = TrainSpec(epochs=3, lr=0.002, batch_size=16, stop_train_accuracy=0.8)
    result = train_model(_toy_model(), nn.CrossEntropyLoss(), _toy_split(True),
                         lambda x: x.float() / 255, spec, seed=0)
    assert result.stop_reason == "epoch_cap" and result.epochs == 3
    assert all(h["train_accuracy"] < 0.8 for h in result.history)


# ------------------------------------------------------------------ plans and members


def test_plans_and_specs():
    paper = plan_for("generalization", "paper", "mnist")
    assert paper.settings == tuple(paper_fractions()) and paper.repeats == 5 and paper.min_steps > 0
    noise = plan_for("noise", "paper", "cifar10")
    assert noise.settings == (0.0, 0.2, 0.4, 0.6, 0.8) and noise.repeats == 5
    for experiment in ("generalization", "noise"):
        quick = plan_for(experiment, "quick", "digits")
        assert quick.repeats >= 3 and len(quick.settings) >= 3
    spec = experiment_spec(plan_for("noise", "paper", "cifar10"), "cifar10", "paper", "ce")
    assert spec.stop_train_accuracy == 0.8 and not spec.augment and spec.train_samples == 0
    spec = experiment_spec(plan_for("generalization", "quick", "mnist"), "mnist", "quick", "hinge")
    assert spec.min_steps > 0 and spec.train_samples == 0 and not spec.augment
    with pytest.raises(UserError):
        plan_for("generalization", "slow", "digits")


def test_experiment_data_drops_validation_and_samples_the_test_split(digits):
    plan = ExperimentPlan("noise", "quick", (0.0,), 1, test_samples=100)
    data = common.experiment_data(digits, plan)
    assert len(data.val) == 0 and len(data.test) == 100 and data.split_hash == digits.split_hash
    test_images = {bytes(x.numpy().tobytes()) for x in digits.test.x}
    assert all(bytes(x.numpy().tobytes()) in test_images for x in data.test.x)
    assert torch.equal(common.experiment_data(digits, plan).test.y, data.test.y)  # fixed
    assert len(common.experiment_data(digits, TINY["generalization"]).test) == len(digits.test)


def test_one_member_per_distinct_loss():
    members = experiment_members("digits", ZOO_TOML.parent)
    names = [m.name for m in members]
    assert "ce-s0" in names and "ce-s1" not in names and len(names) == len(set(names))
    assert "ce-s100" not in names  # attackers are not trained on the experiments' subsets
    assert len({(m.loss, m.head) for m in members}) == len(members)
    assert [m.name for m in experiment_members("digits", ZOO_TOML.parent, ["ce"])] == ["ce-s0", "ce-unit-s0"]
    assert [m.name for m in experiment_members("digits", ZOO_TOML.parent, ["ce-s1"])] == ["ce-s1"]


# ------------------------------------------------------------------ end-to-end, tiny


TINY = {
    "generalization": ExperimentPlan("generalization", "quick", (0.05, 0.1), 2, min_steps=3),
    "noise": ExperimentPlan("noise", "quick", (0.0, 0.5), 2, stop_train_accuracy=0.8, train_pool=256),
}
NAMES = ["ce-s0", "1toN-sym-d1-s0"]


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Tiny plans and train specs, a temporary zoo and a counter of trained cells."""
    for experiment, plan in TINY.items():
        monkeypatch.setitem(common.PLANS, (experiment, "quick", "digits"), plan)
        paper = dataclasses.replace(plan, preset="paper")
        monkeypatch.setitem(common.PLANS, (experiment, "paper", "digits"), paper)
    monkeypatch.setattr(common, "train_spec", lambda d, p, loss: TrainSpec(epochs=1, lr=0.001, batch_size=64))
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(ZOO_TOML, zoo / "digits.toml")
    calls: list[dict] = []
    real = members_module.train_member

    def counting(data, member, spec, folder, **kwargs):
        calls.append({"member": member, "spec": spec, "train": kwargs["train"], "name": kwargs["name"]})
        return real(data, member, spec, folder, **kwargs)

    monkeypatch.setattr(members_module, "train_member", counting)
    kwargs = dict(names=NAMES, zoo_dir=zoo, results_dir=tmp_path / "results", device="cpu")
    return kwargs, calls


@pytest.mark.parametrize("run", [run_generalization, run_noise])
def test_every_loss_sees_the_same_training_data(tiny, run):
    kwargs, calls = tiny
    rows = run("digits", **kwargs)
    assert len(rows) == len(calls) == 2 * 2 * len(NAMES)
    by_cell: dict[tuple, list] = {}
    for call, row in zip(calls, rows):
        assert call["name"] == row["model"]
        by_cell.setdefault((row["setting"], row["repeat"]), []).append(call)
    for (setting, repeat), cell_calls in by_cell.items():
        first = cell_calls[0]["train"]
        for call in cell_calls[1:]:  # same images and labels for every loss
            assert torch.equal(call["train"].x, first.x) and torch.equal(call["train"].y, first.y)
        # same training seed for every loss within a repeat: seed * 1000 + repeat
        assert {c["member"].seed for c in cell_calls} == {repeat}
    assert all(call["spec"].augment is False and call["spec"].train_samples == 0 for call in calls)


def test_generalization_rows_cards_and_resume(tiny, monkeypatch):
    kwargs, calls = tiny
    rows = run_generalization("digits", **kwargs)
    assert len(calls) == 8
    row = next(r for r in rows if r["member"] == "ce-s0" and r["setting"] == 0.1 and r["repeat"] == 1)
    assert row["model"] == "ce-s0-gen0.1-r1" and row["num_train"] == round(0.1 * 1293)
    assert row["seed"] == 0 and row["train_seed"] == 1 and row["stop_reason"] == "min_steps"
    assert 0 <= row["test_accuracy"] <= 1 and row["num_test"] == 360
    card = json.loads((kwargs["zoo_dir"] / "digits" / "experiments" / row["model"] / "card.json").read_text())
    assert card["experiment"] == "generalization" and card["fraction"] == 0.1 and card["repeat"] == 1
    assert card["num_train"] == row["num_train"] and card["weights_sha256"] == row["weights_sha256"]
    one_to_n = next(r for r in rows if r["member"] == "1toN-sym-d1-s0")
    assert (one_to_n["loss"], one_to_n["bound"], one_to_n["delta"], one_to_n["head"]) == ("1toN", "sym", 1.0, "unit")
    # a second run trains nothing and returns the same rows
    calls.clear()
    assert run_generalization("digits", **kwargs) == rows and calls == []
    # rows of another preset or training spec are not silently reused
    with pytest.raises(UserError):
        run_generalization("digits", preset="paper", **kwargs)
    monkeypatch.setattr(common, "train_spec", lambda d, p, loss: TrainSpec(epochs=1, lr=0.002, batch_size=64))
    with pytest.raises(UserError, match="training spec"):
        run_generalization("digits", **kwargs)
    assert calls == []


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


def test_a_killed_run_resumes_cell_by_cell(tiny, monkeypatch):
    kwargs, calls = tiny
    counting = members_module.train_member

    def dies_on_the_fourth(*args, **kw):
        if len(calls) == 3:
            calls.append({"member": None})
            raise Killed
        return counting(*args, **kw)

    monkeypatch.setattr(members_module, "train_member", dies_on_the_fourth)
    with pytest.raises(Killed):
        run_noise("digits", **kwargs)
    assert len(common.ResultStore(kwargs["results_dir"]).records(common.ExperimentRecord)) == 3
    monkeypatch.setattr(members_module, "train_member", counting)
    calls.clear()
    rows = run_noise("digits", **kwargs)
    assert len(calls) == 5 and len(rows) == 8  # only the unfinished cells ran
    flipped = {r["setting"]: r["num_flipped"] for r in rows}
    assert flipped == {0.0: 0, 0.5: 128} and {r["num_train"] for r in rows} == {256}
    assert all(r["stop_reason"] in ("train_accuracy", "epoch_cap") for r in rows)
    calls.clear()
    forced = run_noise("digits", force=True, **kwargs)
    assert len(calls) == 8 and len(forced) == 8


# ------------------------------------------------------------------ summaries


def _rows(accs: dict[str, list[float]], setting=0.1):
    return [
        {"experiment": "generalization", "dataset": "digits", "setting_name": "fraction",
         "setting": str(setting), "repeat": str(r), "member": member,
         "loss": "ce" if member.startswith("ce") else "1toN", "test_accuracy": str(acc)}
        for member, values in accs.items() for r, acc in enumerate(values)
    ]


def test_summary_against_hand_computed_values():
    ce = [0.80, 0.70, 0.75]
    one = [0.84, 0.76, 0.77]
    summary = summarize(_rows({"ce-s0": ce, "1toN-sym-d1-s0": one}) + _rows({"ce-s0": [0.9]}, 0.5))
    assert [(s["setting"], s["member"]) for s in summary] == [
        (0.1, "ce-s0"), (0.1, "1toN-sym-d1-s0"), (0.5, "ce-s0")]
    s = summary[1]
    t = scipy_stats.t.ppf(0.975, 2)
    mean = sum(one) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in one) / 2)
    assert s["n"] == 3 and s["mean"] == pytest.approx(mean)
    assert s["ci_low"] == pytest.approx(mean - t * sd / math.sqrt(3))
    assert s["ci_high"] == pytest.approx(mean + t * sd / math.sqrt(3))
    diffs = [a - b for a, b in zip(one, ce)]  # 0.04, 0.06, 0.02
    dmean = sum(diffs) / 3
    dsd = math.sqrt(sum((d - dmean) ** 2 for d in diffs) / 2)
    assert s["diff_vs_ce"] == pytest.approx(0.04)
    assert s["diff_ci_low"] == pytest.approx(0.04 - t * dsd / math.sqrt(3))
    assert s["diff_ci_high"] == pytest.approx(0.04 + t * dsd / math.sqrt(3))
    assert summary[0]["diff_vs_ce"] == 0.0
    assert summary[2]["n"] == 1 and math.isnan(summary[2]["ci_low"])


def test_summary_pairs_by_repeat():
    rows = _rows({"ce-s0": [0.8, 0.7, 0.75], "1toN-sym-d1-s0": [0.9, 0.8, 0.85]})
    rows = [r for r in rows if not (r["member"] == "1toN-sym-d1-s0" and r["repeat"] == "1")]
    s = summarize(reversed(rows))[1]
    assert s["member"] == "1toN-sym-d1-s0" and s["n"] == 2 and s["n_pairs"] == 2
    assert s["diff_vs_ce"] == pytest.approx(0.1) and s["diff_ci_low"] == pytest.approx(0.1)
    no_ce = summarize(_rows({"1toN-sym-d1-s0": [0.9, 0.8]}))
    assert math.isnan(no_ce[0]["diff_vs_ce"])


def test_format_summary_is_an_aligned_table():
    text = format_summary(summarize(_rows({"ce-s0": [0.8, 0.7], "1toN-sym-d1-s0": [0.9, 0.8]})))
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].split()[:3] == ["experiment", "fraction", "member"]
    assert "1toN-sym-d1-s0" in lines[2] and "+0.1000" in lines[2]
    assert lines[1].index("ce-s0") == lines[2].index("1toN-sym-d1-s0")
    assert format_summary([]) == "(no results)"
