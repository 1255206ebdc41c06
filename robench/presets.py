"""Training presets per dataset and loss (PROTOCOL.md, "Training"; paper §IV-B).

``paper`` is the paper's recipe: batch 256, RMSProp (TF semantics), the dataset's
learning-rate schedule, and more epochs for hinge than for ce / 1-to-N. ``quick`` is
robench's own small recipe that trains on two CPU cores in minutes, for demos and tests;
for the large datasets it trains on a fixed random subset of the training split. The
quick mnist / fashion-mnist recipe uses batch 128: with RMSProp's accumulators starting
at 1.0 the first steps are small, and at the same compute (4 epochs of 16,384 images,
measured before the recipe went to 3) batch 128's twice the steps took the
Fashion-MNIST ce member from 0.84 (batch 256) to 0.87.
"""

from __future__ import annotations

from dataclasses import replace

from robench.config import TrainSpec, to_dict
from robench.errors import UserError

PRESETS = ("paper", "quick")
ARCHITECTURE = {
    "digits": "digits-cnn",
    "mnist": "mnist-cnn",
    "fashion-mnist": "mnist-cnn",
    "cifar10": "wrn-28-2",
    "imagenet32": "wrn-28-2",
}

# The paper decays ImageNet32's learning rate × 0.2 every 10 epochs. An epoch of the
# whole training split (1,281,167 images) is 5,004 full batches of 256, so the decay is
# counted as every 50,040 steps: the same steps on the whole split, and on a training
# subset (generalization, noise) a decay by the work done, not by passes over a few
# images; counted in epochs, the 1,000-step floor on a 1,601-image subset (6 steps an
# epoch) would decay the rate 16 times, to 0.01 · 0.2¹⁶ ≈ 7e-14.
IMAGENET32_DECAY_STEPS = 10 * (1_281_167 // 256)

# (schedule without epochs, epochs for ce / 1-to-N, epochs for hinge)
_PAPER = {
    "mnist": (dict(lr=0.01), 18, 30),
    "fashion-mnist": (dict(lr=0.01), 18, 30),
    "cifar10": (dict(lr=0.1, lr_decay=0.5, lr_decay_steps=6000, augment=True), 60, 100),
    "imagenet32": (dict(lr=0.01, momentum=0.9, lr_decay=0.2, lr_decay_steps=IMAGENET32_DECAY_STEPS, augment=True),
                   25, 30),
}
_QUICK = {
    "digits": (dict(lr=0.003), 30, 40),
    "mnist": (dict(lr=0.003, batch_size=128, train_samples=16384), 3, 4),
    "fashion-mnist": (dict(lr=0.003, batch_size=128, train_samples=16384), 3, 4),
    "cifar10": (dict(lr=0.01, train_samples=2048, augment=True), 2, 3),
    "imagenet32": (dict(lr=0.01, momentum=0.9, train_samples=2048, augment=True), 2, 3),
}
_PAPER["digits"] = _QUICK["digits"]  # digits has no paper recipe; its quick one stands in


def train_spec(dataset: str, preset: str, loss_name: str) -> TrainSpec:
    """The TrainSpec of ``preset`` for a member of ``dataset`` trained with ``loss_name``."""
    table = {"paper": _PAPER, "quick": _QUICK}.get(preset)
    if table is None:
        raise UserError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    if dataset not in table:
        raise UserError(f"unknown dataset {dataset!r}; valid: {', '.join(sorted(table))}")
    schedule, epochs, hinge_epochs = table[dataset]
    return TrainSpec(epochs=hinge_epochs if loss_name == "hinge" else epochs, **schedule)


def presets_matching(dataset: str, loss_name: str, train: dict) -> list[str]:
    """The presets whose spec for ``dataset`` and ``loss_name`` is ``train`` (a card's
    ``train`` record), by name; none for a spec of its own or an unknown dataset."""
    return [preset for preset in PRESETS
            if dataset in _PAPER and to_dict(train_spec(dataset, preset, loss_name)) == train]


def with_overrides(spec: TrainSpec, **overrides) -> TrainSpec:
    """``spec`` with the non-None ``overrides`` applied."""
    return replace(spec, **{k: v for k, v in overrides.items() if v is not None})
