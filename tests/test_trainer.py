"""Trainer: bit-for-bit repeatability, resume after a kill, stop rules, schedules."""

from __future__ import annotations

import json

import pytest
import torch

import robench.train.trainer as trainer
from robench.config import LossSpec, TrainSpec
from robench.data.base import Split
from robench.losses import create_loss
from robench.models import create_model
from robench.train.trainer import planned_epochs, train_model


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("digits-cnn", 10, "linear", (0.3,), (0.37,))


def _train_split(digits, n=300):
    return Split(digits.train.x[:n], digits.train.y[:n])


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


SPEC = TrainSpec(epochs=3, lr=0.001, batch_size=64)


def test_seeded_runs_are_bit_identical(digits):
    runs = []
    for _ in range(2):
        model = _model()
        train_model(model, create_loss(LossSpec("ce")), _train_split(digits), digits.to_float, SPEC, seed=5)
        runs.append(_weights(model))
    _assert_same(*runs)


def test_killed_run_resumes_to_the_same_weights(digits, tmp_path, monkeypatch):
    loss = create_loss(LossSpec("1toN", 1.0, "zero"))
    reference = _model()
    full = train_model(reference, loss, _train_split(digits), digits.to_float, SPEC, seed=3)

    real_epoch = trainer._run_epoch
    calls = {"n": 0}

    def dying_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "_run_epoch", dying_epoch)
    monkeypatch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), loss, _train_split(digits), digits.to_float, SPEC, 3, tmp_path, "fp")
    monkeypatch.setattr(trainer, "_run_epoch", real_epoch)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2

    resumed_model = _model(seed=99)  # different init: everything must come from the checkpoint
    resumed = train_model(resumed_model, loss, _train_split(digits), digits.to_float, SPEC, 3, tmp_path, "fp")
    assert resumed.epochs == full.epochs == 3 and resumed.steps == full.steps
    _assert_same(_weights(resumed_model), _weights(reference))
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]


def test_checkpoint_of_another_configuration_is_refused(digits, tmp_path):
    from robench.errors import UserError

    loss = create_loss(LossSpec("ce"))
    one_epoch = TrainSpec(epochs=1, lr=0.001, batch_size=64)
    train_model(_model(), loss, _train_split(digits), digits.to_float, one_epoch, 0, tmp_path, "a")
    with pytest.raises(UserError, match="different training configuration"):
        train_model(_model(), loss, _train_split(digits), digits.to_float, one_epoch, 0, tmp_path, "b")


def test_min_steps_extends_tiny_subsets(digits):
    spec = TrainSpec(epochs=2, lr=0.001, batch_size=256, min_steps=25)
    small = _train_split(digits, 40)  # batch = 40, one step per epoch
    assert planned_epochs(spec, 40) == 25
    result = train_model(_model(), create_loss(LossSpec("ce")), small, digits.to_float, spec, 0)
    assert result.steps == 25 and result.stop_reason == "min_steps"


def test_epoch_count_and_last_batch_policy(digits):
    result = train_model(_model(), create_loss(LossSpec("ce")), _train_split(digits, 300),
                         digits.to_float, SPEC, 0)
    assert result.stop_reason == "epochs"
    assert result.steps == 3 * (300 // 64)  # the partial last batch is dropped


def test_stop_at_train_accuracy_fires_at_first_epoch_over_target(digits):
    spec = TrainSpec(epochs=40, lr=0.001, batch_size=64, stop_train_accuracy=0.8)
    result = train_model(_model(), create_loss(LossSpec("ce")), _train_split(digits),
                         digits.to_float, spec, 0)
    accs = [h["train_accuracy"] for h in result.history]
    assert result.stop_reason == "train_accuracy"
    assert accs[-1] >= 0.8 and all(a < 0.8 for a in accs[:-1])


def test_unreachable_target_stops_at_epoch_cap(digits):
    spec = TrainSpec(epochs=2, lr=1e-6, batch_size=64, stop_train_accuracy=0.99)
    result = train_model(_model(), create_loss(LossSpec("ce")), _train_split(digits),
                         digits.to_float, spec, 0)
    assert result.stop_reason == "epoch_cap" and result.epochs == 2


def test_schedule_is_applied_per_step(digits, monkeypatch):
    seen = []
    real = trainer.RMSPropTF.set_lr
    monkeypatch.setattr(trainer.RMSPropTF, "set_lr", lambda self, lr: (seen.append(lr), real(self, lr)))
    spec = TrainSpec(epochs=2, lr=0.1, batch_size=100, lr_decay=0.5, lr_decay_steps=2)
    train_model(_model(), create_loss(LossSpec("ce")), _train_split(digits), digits.to_float, spec, 0)
    assert seen == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
