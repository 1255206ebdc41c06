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
    monkeypatch.setattr(trainer, "_run_epoch", _dies_at(3, real_epoch))
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


def test_run_killed_between_a_checkpoints_tensors_and_its_json_resumes(digits, tmp_path, monkeypatch):
    """The third epoch's tensors are on disk but its JSON is not: the run resumes from the
    second epoch's checkpoint (still whole) and ends on the uninterrupted run's weights."""
    import robench.train.checkpoint as checkpoint

    loss = create_loss(LossSpec("ce"))
    reference = _model()
    train_model(reference, loss, _train_split(digits), digits.to_float, SPEC, seed=4)
    real_write = checkpoint.atomic_write_json
    monkeypatch.setattr(checkpoint, "atomic_write_json", _dies_at(3, real_write))
    monkeypatch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), loss, _train_split(digits), digits.to_float, SPEC, 4, tmp_path, "fp")
    monkeypatch.setattr(checkpoint, "atomic_write_json", real_write)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    assert len(list(tmp_path.glob("checkpoint*.safetensors"))) == 2  # epoch 2's and the unnamed epoch 3's

    resumed_model = _model(seed=99)
    resumed = train_model(resumed_model, loss, _train_split(digits), digits.to_float, SPEC, 4, tmp_path, "fp")
    assert resumed.epochs == 3
    _assert_same(_weights(resumed_model), _weights(reference))
    assert len(list(tmp_path.glob("checkpoint*.safetensors"))) == 1  # older tensor files are removed


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


# ---- the step engine: a plain reference loop, bf16, CUDA graphs --------------------------
def _plain_loop(model, loss, split, to_float, spec, seed):
    """The protocol's loop written out op by op: shuffle, gather, flip + crop, RMSPropTF."""
    from robench.data.augment import random_flip_crop
    from robench.train.rmsprop_tf import RMSPropTF
    from robench.train.schedules import step_decay_lr

    shuffle, augment = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    optimizer = RMSPropTF(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    model.train()
    n, step = len(split), 0
    for epoch in range(spec.epochs):
        order = torch.randperm(n, generator=shuffle)
        for b in range(n // spec.batch_size):
            index = order[b * spec.batch_size : (b + 1) * spec.batch_size]
            images = split.x[index]
            if spec.augment:
                images = random_flip_crop(images, augment)
            optimizer.set_lr(step_decay_lr(spec.lr, spec.lr_decay, step, epoch, spec.lr_decay_steps,
                                           spec.lr_decay_epochs))
            value = loss(model(to_float(images)), split.y[index])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            step += 1


def test_trainer_equals_a_plain_loop_bit_for_bit(digits):
    spec = TrainSpec(epochs=2, lr=0.002, batch_size=64, momentum=0.9, lr_decay=0.5,
                     lr_decay_steps=3, augment=True)
    loss = create_loss(LossSpec("1toN", 1.0, "sym"))
    ours, plain = _model(), _model()
    train_model(ours, loss, _train_split(digits), digits.to_float, spec, seed=4)
    _plain_loop(plain, loss, _train_split(digits), digits.to_float, spec, seed=4)
    _assert_same(_weights(ours), _weights(plain))


def test_bf16_autocast_training_learns_like_fp32(digits):
    from robench.metrics import accuracy

    spec = TrainSpec(epochs=6, lr=0.003, batch_size=64)
    results = {}
    for precision in ("fp32", "bf16"):
        model = _model()
        train_model(model, create_loss(LossSpec("ce")), _train_split(digits, 600), digits.to_float,
                    spec, seed=0, precision=precision)
        results[precision] = accuracy(model, digits.test.x, digits.test.y, digits.to_float)
    assert results["fp32"] > 0.8
    assert abs(results["bf16"] - results["fp32"]) < 0.05, results


def test_unknown_precision_and_graph_without_cuda_are_refused(digits):
    from robench.errors import UserError

    args = (_model(), create_loss(LossSpec("ce")), _train_split(digits), digits.to_float, SPEC, 0)
    with pytest.raises(UserError, match="unknown precision 'fp8'; valid: auto, fp32, bf16"):
        train_model(*args, precision="fp8")
    with pytest.raises(ValueError, match="CUDA graphs need"):
        train_model(*args, cuda_graph=True)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def _cuda_split(digits, n=600):
    split = _train_split(digits, n)
    return Split(split.x.cuda(), split.y.cuda())


@needs_cuda
@pytest.mark.parametrize("loss_spec", [LossSpec("ce"), LossSpec("1toN", 1.0, "zero")])
def test_graphed_step_equals_eager_on_cuda_fp32(digits, loss_spec):
    """Graph replay reads the index, the augmentation draws and the decayed learning rate
    from its static buffers: the same run eager and graphed ends at the same weights, up
    to the run-to-run noise of CUDA's atomic-add kernels — far below what a stale buffer
    (a repeated batch, an undecayed learning rate) would change."""
    spec = TrainSpec(epochs=2, lr=0.002, batch_size=64, momentum=0.9, lr_decay=0.1,
                     lr_decay_steps=6, augment=True)
    runs = {}
    for name, graph in (("eager", False), ("eager again", False), ("graph", True)):
        model = _model().cuda()
        initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        train_model(model, create_loss(loss_spec), _cuda_split(digits), digits.to_float, spec, seed=2,
                    precision="fp32", cuda_graph=graph)
        runs[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    moved = (runs["eager"] - initial).norm()
    noise = (runs["eager again"] - runs["eager"]).norm()
    gap = (runs["graph"] - runs["eager"]).norm()
    assert gap <= 1e-3 * moved + 10 * noise, (gap, noise, moved)


@needs_cuda
def test_compiled_graphed_step_equals_eager_on_cuda_fp32(digits):
    """``compile_model``: the torch.compile'd forward inside the captured step trains to
    the eager run's weights, up to the kernels' rounding (fused kernels sum in another order)."""
    spec = TrainSpec(epochs=2, lr=0.002, batch_size=64, momentum=0.9, lr_decay=0.1,
                     lr_decay_steps=6, augment=True)
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        model = _model().cuda()
        initial = _flat(model).clone()
        train_model(model, create_loss(LossSpec("ce")), _cuda_split(digits), digits.to_float, spec, seed=2,
                    precision="fp32", cuda_graph=compiled, compile_model=compiled)
        runs[name] = _flat(model)
    moved = (runs["eager"] - initial).norm()
    assert (runs["compiled"] - runs["eager"]).norm() <= 1e-2 * moved


@needs_cuda
def test_graphed_bf16_training_learns_on_cuda(digits):
    from robench.metrics import accuracy

    model = _model().cuda()
    spec = TrainSpec(epochs=8, lr=0.003, batch_size=64)
    train_model(model, create_loss(LossSpec("1toN", 1.0, "sym")), _cuda_split(digits, 1200),
                digits.to_float, spec, seed=0)  # auto: bf16 + channels_last + graph
    assert accuracy(model, digits.test.x.cuda(), digits.test.y.cuda(), digits.to_float) > 0.85


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@needs_cuda
def test_graphed_run_resumes_on_cuda(digits, tmp_path, monkeypatch):
    """Killed after two epochs and resumed, a graphed run ends where an uninterrupted one
    does, up to the run-to-run noise of CUDA's atomic-add kernels."""
    loss = create_loss(LossSpec("ce"))
    references = []
    for _ in range(2):
        model = _model().cuda()
        train_model(model, loss, _cuda_split(digits), digits.to_float, SPEC, 3, precision="fp32")
        references.append(_flat(model))
    monkeypatch.setattr(trainer, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    real_epoch = trainer._run_epoch
    monkeypatch.setattr(trainer, "_run_epoch", _dies_at(3, real_epoch))
    with pytest.raises(KeyboardInterrupt):
        train_model(_model().cuda(), loss, _cuda_split(digits), digits.to_float, SPEC, 3, tmp_path, "fp",
                    precision="fp32")
    monkeypatch.setattr(trainer, "_run_epoch", real_epoch)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["epoch"] == 2
    resumed = _model(seed=9).cuda()  # different init: everything must come from the checkpoint
    train_model(resumed, loss, _cuda_split(digits), digits.to_float, SPEC, 3, tmp_path, "fp",
                precision="fp32")
    moved = (references[0] - _flat(_model().cuda())).norm()
    noise = (references[1] - references[0]).norm()
    assert (_flat(resumed) - references[0]).norm() <= 1e-3 * moved + 10 * noise


def _dies_at(call, real):
    """``real``, but its ``call``-th call raises KeyboardInterrupt (a kill there)."""
    calls = {"n": 0}

    def epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return epoch


def test_cudnn_autotuning_is_restored_after_training(process_settings):
    """Training turns cuDNN autotuning on for its fixed shapes and gives the process its
    own setting back, also when it stops on an error."""
    torch.backends.cudnn.benchmark = False
    with trainer._cudnn_autotuning(True):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is False
    with pytest.raises(KeyboardInterrupt), trainer._cudnn_autotuning(True):
        raise KeyboardInterrupt
    assert torch.backends.cudnn.benchmark is False
    with trainer._cudnn_autotuning(False):  # a CPU run leaves it alone
        assert torch.backends.cudnn.benchmark is False
