"""The paper presets run end to end on tiny files in the real formats (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import robench.train.trainer as trainer
from fileformats import write_cifar, write_idx_set, write_imagenet32
from robench.data.subsets import paper_fractions, subset_size
from robench.experiments.common import plan_for
from robench.presets import train_spec
from robench.train.members import train_zoo
from robench.train.schedules import step_decay_lr

REPO = Path(__file__).resolve().parent.parent


def _lr_log(monkeypatch) -> list[float]:
    seen: list[float] = []
    real = trainer.RMSPropTF.set_lr
    monkeypatch.setattr(trainer.RMSPropTF, "set_lr", lambda self, lr: (seen.append(lr), real(self, lr)))
    return seen


def _zoo(tmp_path: Path, dataset: str) -> Path:
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    (zoo_dir / f"{dataset}.toml").write_text((REPO / "zoo" / f"{dataset}.toml").read_text())
    return zoo_dir


def test_paper_schedules_match_the_paper():
    mnist = train_spec("mnist", "paper", "ce")
    assert (mnist.lr, mnist.lr_decay, mnist.epochs, mnist.batch_size, mnist.augment) == (0.01, 1.0, 18, 256, False)
    assert train_spec("mnist", "paper", "hinge").epochs == 30
    cifar = train_spec("cifar10", "paper", "1toN")
    assert (cifar.lr, cifar.lr_decay, cifar.lr_decay_steps, cifar.epochs, cifar.augment) == (0.1, 0.5, 6000, 60, True)
    assert train_spec("cifar10", "paper", "hinge").epochs == 100
    assert [step_decay_lr(0.1, 0.5, s, 0, 6000, 0) for s in (0, 5999, 6000, 12000)] == [0.1, 0.1, 0.05, 0.025]
    imnet = train_spec("imagenet32", "paper", "ce")
    assert (imnet.lr, imnet.momentum, imnet.lr_decay, imnet.epochs) == (0.01, 0.9, 0.2, 25)
    assert train_spec("imagenet32", "paper", "hinge").epochs == 30


def test_imagenet32_decay_in_steps_is_every_10_epochs_of_the_whole_split():
    """Paper: × 0.2 every 10 epochs. Counted in steps (5,004 full batches of 256 per
    epoch of 1,281,167 images), every step of a whole-split run gets the epoch rule's
    rate, and a 1,000-step run on a tiny subset is not decayed."""
    imnet = train_spec("imagenet32", "paper", "1toN")
    steps_per_epoch = 1_281_167 // 256
    assert imnet.lr_decay_epochs == 0 and imnet.lr_decay_steps == 10 * steps_per_epoch
    for epoch in range(30):
        for step in (epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch - 1):
            by_steps = step_decay_lr(imnet.lr, imnet.lr_decay, step, epoch, imnet.lr_decay_steps, 0)
            by_epochs = step_decay_lr(imnet.lr, imnet.lr_decay, step, epoch, 0, 10)
            assert by_steps == by_epochs, (epoch, step)
    assert step_decay_lr(imnet.lr, imnet.lr_decay, 999, 166, imnet.lr_decay_steps, 0) == imnet.lr


@pytest.mark.parametrize("dataset, num_train, num_classes", [
    ("digits", 1293, 10), ("mnist", 54000, 10), ("fashion-mnist", 54000, 10), ("cifar10", 45000, 10),
    ("imagenet32", 1_281_167, 1000)])
def test_paper_generalization_subsets_hold_at_least_one_image_per_class(dataset, num_train, num_classes):
    """The training splits' sizes (90 % of the train file; all of ImageNet32's): a subset smaller than the class
    count cannot show every class, and a batch of one class makes the 1-to-N loss 0."""
    plan = plan_for("generalization", "paper", dataset)
    assert min(subset_size(num_train, f) for f in plan.settings) >= num_classes
    assert set(plan.settings) <= set(paper_fractions()) and 1.0 in plan.settings


@pytest.mark.slow
def test_mnist_paper_preset_end_to_end(tmp_path, monkeypatch, tiny_counts):
    write_idx_set(tmp_path / "data" / "MNIST" / "raw", gz=True, n_train=60, n_test=20)
    tiny_counts.idx(n_train=60, n_test=20)
    lrs = _lr_log(monkeypatch)
    cards = train_zoo("mnist", "paper", ["ce-s0", "hinge-d1-s0"], None, _zoo(tmp_path, "mnist"), "cpu", tmp_path / "data")
    by_loss = {c["loss"]["name"]: c for c in cards}
    assert by_loss["ce"]["epochs"] == 18 and by_loss["hinge"]["epochs"] == 30
    assert by_loss["ce"]["num_train"] == 54 and by_loss["ce"]["steps"] == 18  # batch = the 54 images
    assert set(lrs) == {0.01}


@pytest.mark.slow
def test_cifar10_paper_preset_end_to_end(tmp_path, monkeypatch, tiny_counts, process_settings):
    write_cifar(tmp_path / "data", per_batch=12, n_test=10)
    tiny_counts.cifar(per_batch=12, n_test=10)
    lrs = _lr_log(monkeypatch)
    torch.set_num_threads(2)
    [card] = train_zoo("cifar10", "paper", ["1toN-sym-d4-s0"], None, _zoo(tmp_path, "cifar10"), "cpu", tmp_path / "data")
    assert card["architecture"] == "wrn-28-2" and card["head"] == "unit" and card["epochs"] == 60
    assert card["train"]["augment"] is True and card["train"]["lr_decay_steps"] == 6000
    assert len(lrs) == 60 and set(lrs) == {0.1}  # 60 steps < 6,000: no decay yet


@pytest.mark.slow
def test_imagenet32_paper_preset_end_to_end(tmp_path, monkeypatch, tiny_counts, process_settings):
    write_imagenet32(tmp_path / "data", per_file=4, n_val=8)
    tiny_counts.imagenet32(per_file=4, n_val=8)
    lrs = _lr_log(monkeypatch)
    torch.set_num_threads(2)
    [card] = train_zoo("imagenet32", "paper", ["ce-s0"], None, _zoo(tmp_path, "imagenet32"), "cpu", tmp_path / "data")
    assert card["num_classes"] == 1000 and card["epochs"] == 25 and card["train"]["momentum"] == 0.9
    assert card["train"]["lr_decay_steps"] == 50_040  # × 0.2 every 10 epochs of the whole split
    assert lrs == [pytest.approx(0.01)] * 25  # 25 steps of a 40-image set: no decay yet
