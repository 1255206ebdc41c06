"""Losses an attack ascends (PROTOCOL.md, "Attacks"), per sample: ``(B, K), (B,) → (B,)``.

* ``ce``: cross entropy of the logits with the true labels (the paper's default).
* ``cw``: the logit margin ``max_{k≠y} z_k − z_y`` (Carlini & Wagner's f₆ without the
  clamp); CE gradients vanish on confident margin-trained models, this one does not.
* ``model``: the attacked member's own training loss, a callable
  ``model_loss(logits, labels, reduction="none")`` supplied by the caller. It may couple
  the samples of a batch (the 1-to-N loss compares every sample with every other one, a
  B×B matrix), so the gradient a sample gets can depend on its batch-mates: such losses
  are flagged ``couples_batch`` and the ε-sweep then attacks each ε on the original batch
  instead of stacking the ε values into one batch.

The attack sums the per-sample values in fp32 and differentiates the sum, so for ``ce``
and ``cw`` each sample's input gradient is exactly its own.
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


@ATTACK_LOSSES.register("ce")
def ce_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Cross entropy with the true labels; ``model_loss`` is not used."""
    return AttackLoss("ce", _ce)


@ATTACK_LOSSES.register("cw")
def cw_loss(model_loss: Callable | None = None) -> AttackLoss:
    """Logit margin max_{k≠y} z_k − z_y; ``model_loss`` is not used."""
    return AttackLoss("cw", _cw)


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
