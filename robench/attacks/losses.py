"""Losses an attack ascends (PROTOCOL.md, "Attacks"), per sample: ``(B, K), (B,) → (B,)``.

* ``ce``: cross entropy of the logits with the true labels (the paper's default).
* ``cw``: the logit margin ``max_{k≠y} z_k − z_y`` (Carlini & Wagner's f₆ without the
  clamp); CE gradients vanish on confident margin-trained models, this one does not.
* ``margin``: ``z_y − max_{k≠y} z_k`` = −cw, the loss the Square attack *minimises*
  (Andriushchenko et al., ECCV 2020; negative once misclassified). It is not an ascent
  loss: a gradient attack should take ``cw``.
* ``dlr``: the difference of logits ratio of Croce & Hein (ICML 2020, §4),
  ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)`` with π the logits sorted in descending
  order: shift- and scale-invariant in the logits, so neither a confident model nor a
  rescaled one flattens it; it needs at least 3 classes.
* ``model``: the attacked member's own training loss, a callable
  ``model_loss(logits, labels, reduction="none")`` supplied by the caller. It may couple
  the samples of a batch (the 1-to-N loss compares every sample with every other one, a
  B×B matrix), so the gradient a sample gets can depend on its batch-mates: such losses
  are flagged ``couples_batch`` and the ε-sweep then attacks each ε on the original batch
  instead of stacking the ε values into one batch.

The attack sums the per-sample values in fp32 and differentiates the sum, so for ``ce``,
``cw`` and ``dlr`` each sample's input gradient is exactly its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from robench.errors import UserError
from robench.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackLoss:
    """A named per-sample attack loss; ``couples_batch`` if a sample's value depends on others."""

    name: str
    fn: LossFn
    couples_batch: bool = False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, labels)


ATTACK_LOSSES: Registry[AttackLoss] = Registry("attack loss")


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)


def _cw(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    z = logits.float()  # (B, K)
    true = z.gather(1, labels[:, None]).squeeze(1)  # (B,)
    is_true = F.one_hot(labels, z.shape[1]).bool()  # (B, K)
    other = z.masked_fill(is_true, float("-inf")).amax(dim=1)  # (B,)
    return other - true


#: Added to the DLR denominator (Croce & Hein's code) so a tie z_π1 = z_π3 gives no 0/0.
DLR_TOLERANCE = 1e-12


def check_dlr_classes(num_classes: int, needed: int = 3, name: str = "DLR") -> None:
    """A UserError unless the model has ``needed`` classes for the ``name`` loss (the DLR
    denominator uses the third-largest logit, the targeted one the fourth)."""
    if num_classes < needed:
        raise UserError(f"the {name} loss needs at least {needed} classes, the model has {num_classes}")


def _dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    z = logits.float()  # (B, K)
    check_dlr_classes(z.shape[1])
    top = z.topk(3, dim=1).values  # (B, 3): z_π1 ≥ z_π2 ≥ z_π3
    true = z.gather(1, labels[:, None]).squeeze(1)  # (B,)
    is_true = F.one_hot(labels, z.shape[1]).bool()  # (B, K)
    other = z.masked_fill(is_true, float("-inf")).amax(dim=1)  # (B,) max_{i≠y} z_i
    return -(true - other) / (top[:, 0] - top[:, 2] + DLR_TOLERANCE)


@ATTACK_LOSSES.register("ce")
def ce_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Cross entropy with the true labels; ``model_loss`` is not used."""
    return AttackLoss("ce", _ce)


@ATTACK_LOSSES.register("cw")
def cw_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Logit margin max_{k≠y} z_k − z_y; ``model_loss`` is not used."""
    return AttackLoss("cw", _cw)


@ATTACK_LOSSES.register("dlr")
def dlr_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Difference of logits ratio −(z_y − max_{i≠y} z_i)/(z_π1 − z_π3 + 1e-12) (Croce &
    Hein 2020, §4); ``model_loss`` is not used."""
    return AttackLoss("dlr", _dlr)


def _margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -_cw(logits, labels)  # (B,)


@ATTACK_LOSSES.register("margin")
def margin_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Margin z_y − max_{k≠y} z_k (minimised by Square; = −cw); ``model_loss`` is not used."""
    return AttackLoss("margin", _margin)


@ATTACK_LOSSES.register("model")
def model_loss_(model_loss: Callable | None = None) -> AttackLoss:
    """The member's own training loss ``model_loss(logits, labels, reduction="none")``."""
    if model_loss is None or not callable(model_loss):
        raise UserError(
            "attack loss 'model' needs the member's training loss (model_loss=...); "
            "use loss 'ce' or 'cw' otherwise"
        )

    def fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return model_loss(logits, labels, reduction="none").float()  # (B,) or ()

    return AttackLoss("model", fn, couples_batch=True)


def create_attack_loss(name: str, model_loss: Callable | None = None) -> AttackLoss:
    """The attack loss registered as ``name`` (UserError listing the valid names)."""
    return ATTACK_LOSSES.create(name, model_loss=model_loss)


def list_attack_losses(pattern: str = "*") -> list[str]:
    """Registered attack-loss names matching ``pattern``."""
    return ATTACK_LOSSES.names(pattern)
