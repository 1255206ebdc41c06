"""Training that diverges (robench.train.divergence): a non-finite loss or non-finite
weights stop the run with one line naming the member, the epoch and its steps, the value
and what to change, and leave no member, no checkpoint and no folder of it; a checkpoint
of a diverged run is never resumed into a member; the command line exits 2; so does an
experiment, which stores no row for the cell."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import robench.experiments.common as common
import robench.presets as presets
import robench.train.members as members
import robench.train.trainer as trainer
from robench.cli import main
from robench.config import LossSpec, TrainSpec
from robench.data.base import Split
from robench.errors import UserError
from robench.experiments import ExperimentPlan, run_generalization
from robench.losses import create_loss
from robench.models import create_model
from robench.store import ExperimentRecord, ResultStore
from robench.train.divergence import TrainingDiverged
from robench.train.trainer import train_model
from robench.zoo import MemberDef

SPEC = TrainSpec(epochs=3, lr=0.003, batch_size=64)  # 300 images: 4 steps per epoch
OVERFLOWING = TrainSpec(epochs=2, lr=1e30, batch_size=64, train_samples=256)  # the first update overflows
MEMBER = MemberDef(LossSpec("hinge", 1.0), "linear", 0, "digits-cnn")


class NanLossFrom(nn.Module):
    """``loss`` whose value (and so every gradient) is NaN from its ``call``-th call on.
    It counts its calls in a tensor on ``device``, so a replayed CUDA graph counts too."""

    def __init__(self, loss: nn.Module, call: int, device: str = "cpu") -> None:
        super().__init__()
        self.loss, self.call = loss, call
        self.calls = torch.zeros((), dtype=torch.long, device=device)

    def forward(self, logits, labels, reduction="mean"):
        self.calls.add_(1)
        factor = torch.where(self.calls >= self.call, float("nan"), 1.0)  # a constant: no gradient of its own
        return self.loss(logits, labels, reduction) * factor


class _NanGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


class NanGradientAt(nn.Module):
    """``loss`` with a finite value whose ``call``-th call back-propagates NaN: that
    step's update makes the weights NaN while its loss stays finite (eager runs only)."""

    def __init__(self, loss: nn.Module, call: int) -> None:
        super().__init__()
        self.loss, self.call, self.calls = loss, call, 0

    def forward(self, logits, labels, reduction="mean"):
        self.calls += 1
        if self.calls == self.call:
            logits = _NanGradient.apply(logits)
        return self.loss(logits, labels, reduction)


def _model():
    torch.manual_seed(0)
    return create_model("digits-cnn", 10, "linear", (0.3,), (0.37,))


def _split(digits, n=300, device="cpu"):
    return Split(digits.train.x[:n].to(device), digits.train.y[:n].to(device))


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def saves(monkeypatch):
    """A checkpoint after every epoch; returns the list of epochs checkpointed."""
    monkeypatch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)
    epochs: list[int] = []
    real = trainer.save_checkpoint

    def counted(folder, model, optimizer, rngs, state, fingerprint):
        epochs.append(state.epoch)
        real(folder, model, optimizer, rngs, state, fingerprint)

    monkeypatch.setattr(trainer, "save_checkpoint", counted)
    return epochs


# ---------------------------------------------------------------- the trainer


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the graphed step needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)], ids=["eager", "cuda-graph"])
def test_a_nan_loss_stops_training_in_its_epoch_and_removes_the_checkpoint(digits, tmp_path, saves, device):
    """On CUDA the run is bf16 and replays a CUDA graph: the NaN reaches the epoch's
    device-side loss sum all the same."""
    loss = NanLossFrom(create_loss(LossSpec("ce")), call=6, device=device)  # step 6: the second of epoch 2
    with pytest.raises(TrainingDiverged) as caught:
        train_model(_model().to(device), loss, _split(digits, device=device), digits.to_float, SPEC, 0, tmp_path,
                    "fp", desc="ce-s0")
    assert str(caught.value) == (
        "ce-s0: training diverged in epoch 2 (steps 5-8): its mean training loss is nan; nothing of this run was "
        "kept (no model, no checkpoint); lower the learning rate (0.003)")
    assert saves == [1] and int(loss.calls) == 8  # epoch 1 was checkpointed; epoch 3 never ran
    assert _files(tmp_path) == []


def test_non_finite_weights_after_a_finite_last_step_are_caught(digits, tmp_path, saves):
    loss = NanGradientAt(create_loss(LossSpec("ce")), call=12)  # the very last step
    with pytest.raises(TrainingDiverged, match=r"^run: training diverged by epoch 3 \(step 12\): the weights hold "
                                               r"NaN or inf \(first: .+\) though the last epoch's mean training "
                                               r"loss was \d"):
        train_model(_model(), loss, _split(digits), digits.to_float, SPEC, 0, tmp_path, "fp", desc="run")
    assert saves == [1, 2]  # the third epoch's weights never reached a checkpoint
    assert _files(tmp_path) == []


def test_without_a_checkpoint_folder_the_weights_are_checked_at_the_end(digits):
    loss = NanGradientAt(create_loss(LossSpec("ce")), call=12)
    with pytest.raises(TrainingDiverged, match="by epoch 3 \\(step 12\\): the weights hold NaN or inf"):
        train_model(_model(), loss, _split(digits), digits.to_float, SPEC, 0)


# ---------------------------------------------------------------- members


def test_a_member_whose_updates_overflow_leaves_nothing_and_starts_over(digits, tmp_path):
    folder = tmp_path / "zoo" / "digits" / MEMBER.name
    expected = ("hinge-d1-s0: training diverged in epoch 1 (steps 1-4): its mean training loss is nan; nothing of "
                "this run was kept (no model, no checkpoint); lower its margin delta (1; valid up to 1000, the "
                "shipped zoos use 1 and 4) in the zoo definition, or the learning rate (1e+30) of its preset")
    for _ in range(2):  # the same command again fails the same way: nothing was resumed
        with pytest.raises(UserError) as caught:
            members.train_member(digits, MEMBER, OVERFLOWING, folder)
        assert str(caught.value) == expected
        assert not folder.exists() and _files(tmp_path) == []


class Killed(Exception):
    """Stands for the process dying between a finished run's last checkpoint and its card."""


@pytest.mark.parametrize("broken, caught_by", [
    (lambda loss: NanLossFrom(loss, call=6), "in epoch 2 of the checkpoint in .+: its mean training loss was nan"),
    (lambda loss: NanGradientAt(loss, call=12), "by epoch 3 \\(step 12\\): the weights hold NaN or inf"),
], ids=["nan-loss", "nan-weights"])
def test_a_checkpoint_of_a_diverged_run_never_becomes_a_member(digits, tmp_path, monkeypatch, saves, broken,
                                                               caught_by):
    """A finished checkpoint that a robench without these checks wrote (its history or its
    weights not finite; the card never written): the next run refuses it and removes it."""
    folder = tmp_path / MEMBER.name
    spec = dataclasses.replace(SPEC, train_samples=300)
    real_loss = members.create_loss
    monkeypatch.setattr(members, "create_loss", lambda loss_spec: broken(real_loss(loss_spec)))
    monkeypatch.setattr(trainer, "DivergenceChecks", _NoChecks)  # the earlier version

    def killed(*args):
        raise Killed

    monkeypatch.setattr(members, "save_member", killed)
    with pytest.raises(Killed):
        members.train_member(digits, MEMBER, spec, folder)
    assert saves == [1, 2, 3] and any(p.name == "checkpoint.json" for p in (folder / ".partial").iterdir())
    monkeypatch.undo()
    with pytest.raises(TrainingDiverged, match=f"^hinge-d1-s0: training diverged {caught_by}"):
        members.train_member(digits, MEMBER, spec, folder)
    assert not folder.exists()


@dataclasses.dataclass
class _NoChecks:
    run: str
    remedy: str
    steps: int

    def check_loss(self, *args):
        pass

    check_weights = check_resumed = check_loss


# ---------------------------------------------------------------- the command line and the experiments


def test_train_zoo_exits_2_with_one_line_and_writes_no_member(tmp_path, monkeypatch, capsys, saves):
    monkeypatch.chdir(tmp_path)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "digits.toml").write_text('architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n')
    spec = dataclasses.replace(SPEC, train_samples=300)
    monkeypatch.setattr(presets, "train_spec", lambda dataset, preset, loss: spec)
    real_loss = members.create_loss
    monkeypatch.setattr(members, "create_loss", lambda loss_spec: NanLossFrom(real_loss(loss_spec), call=6))
    code = main(["train", "zoo", "--dataset", "digits", "--zoo-dir", str(zoo), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("robench: error: ce-s0: training diverged in epoch 2 (steps 5-8): its mean training "
                          "loss is nan; nothing of this run was kept"), err
    assert saves == [1] and _files(tmp_path) == ["zoo/digits.toml"]
    assert not (zoo / "digits" / "ce-s0").exists()


def test_an_experiment_cell_that_diverges_stops_the_run_and_stores_no_row(tmp_path, monkeypatch):
    plan = ExperimentPlan("generalization", "quick", (0.2,), 1, min_steps=3)
    monkeypatch.setitem(common.PLANS, ("generalization", "quick", "digits"), plan)
    monkeypatch.setattr(common, "train_spec", lambda dataset, preset, loss: OVERFLOWING)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "digits.toml").write_text('architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n')
    with pytest.raises(UserError, match=r"^ce-s0-gen0\.2-r0: training diverged in epoch 1 \(steps 1-4\): its mean "
                                        r"training loss is nan; .* lower the learning rate \(1e\+30\) of its preset$"):
        run_generalization("digits", zoo_dir=zoo, results_dir=tmp_path / "results", device="cpu")
    with ResultStore(tmp_path / "results") as store:
        assert store.records(ExperimentRecord) == []
    assert _files(zoo) == ["digits.toml"]


def test_a_member_saved_with_nan_weights_is_refused_when_loaded(tmp_path):
    """A member an unchecked training saved with NaN weights (the card and its binding
    intact) is never attacked: loading it is one line naming the tensor."""
    from robench.config import to_dict
    from robench.zoo import load, member_dir, save_member

    model = _model()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    card = {"name": "ce-s0", "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10, "head": "linear",
            "mean": [0.3], "std": [0.37], "loss": to_dict(LossSpec("ce")), "seed": 0, "role": "defender"}
    folder = member_dir(tmp_path, "digits", "ce-s0")
    save_member(folder, model, card)
    with pytest.raises(UserError, match="holds NaN or infinite values \\(tensor '.+'\\): its training diverged") as refused:
        load(folder)
    assert "\n" not in str(refused.value)
