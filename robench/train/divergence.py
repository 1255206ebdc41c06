"""A training run that diverged: a non-finite loss or non-finite weights end it with a
UserError, and nothing of it is kept.

Where it is checked, at no extra host sync inside an epoch:

- the epoch's mean loss, which the trainer reads on the host once per epoch anyway: the
  sum of the steps' batch losses is NaN or ±inf as soon as one step's loss was, so one
  check per epoch catches every non-finite step;
- the model's floating-point state (parameters and buffers such as batch-norm
  statistics) before every checkpoint and once more when training ends: a last step
  whose loss was finite but whose update was not would otherwise reach a checkpoint or
  the member's weights;
- the loss history of a resumed checkpoint, which a run of an earlier version may have
  written after a non-finite epoch.

The trainer then removes the run's checkpoint, so the same command starts the member
over instead of resuming a run that diverged (docs/reliability.md, "Training that
diverges").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robench.errors import UserError
from robench.train.checkpoint import TrainState


class TrainingDiverged(UserError):
    """Training produced a non-finite loss or non-finite weights; the message is one line
    naming the run, where it happened, the value, and what to change."""


def nonfinite_state(model: nn.Module) -> str | None:
    """The name of the first floating-point tensor of ``model``'s state holding NaN or
    ±inf, or None when all are finite (one host sync for the whole state)."""
    named = [(name, t) for name, t in model.state_dict().items() if t.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named]).cpu()  # (tensors,)
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def first_nonfinite_epoch(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first record of ``history`` whose loss is not a finite number, or None."""
    for record in history:
        loss = record.get("loss")
        if not (isinstance(loss, (int, float)) and math.isfinite(loss)):
            return record
    return None


def diverged(run: str, where: str, what: str, remedy: str) -> TrainingDiverged:
    """The error of run ``run`` that diverged ``where`` (an epoch and its steps) with
    ``what`` (the non-finite value); ``remedy`` says what to change."""
    return TrainingDiverged(f"{run}: training diverged {where}: {what}; nothing of this run was kept (no model, "
                            f"no checkpoint); {remedy}")


@dataclass
class DivergenceChecks:
    """The checks of one run: ``run`` names it in the error, ``remedy`` says what to
    change, ``steps`` is its steps per epoch (to name the epoch's steps)."""

    run: str
    remedy: str
    steps: int
    checked_step: int = -1  # the step whose weights were last found finite

    def check_loss(self, loss: float, state: TrainState) -> None:
        """Raise if the mean loss of the epoch just run (``state.epoch``) is not finite."""
        if not math.isfinite(loss):
            where = f"in epoch {state.epoch} (steps {state.step - self.steps + 1}-{state.step})"
            raise diverged(self.run, where, f"its mean training loss is {loss}", self.remedy)

    def check_weights(self, model: nn.Module, state: TrainState) -> None:
        """Raise if the model's state holds NaN or ±inf after ``state.step`` steps (once
        per step: the end of training repeats the last checkpoint's check for free)."""
        if state.step == self.checked_step:
            return
        name = nonfinite_state(model)
        if name is not None:
            last = state.history[-1]["loss"] if state.history else None
            loss = f" though the last epoch's mean training loss was {last:.4g}" if last is not None else ""
            raise diverged(self.run, f"by epoch {state.epoch} (step {state.step})",
                           f"the weights hold NaN or inf (first: {name}){loss}", self.remedy)
        self.checked_step = state.step

    def check_resumed(self, state: TrainState, checkpoint_dir: Path | None) -> None:
        """Raise if a resumed checkpoint's history holds a non-finite epoch loss."""
        record = first_nonfinite_epoch(state.history)
        if record is not None:
            raise diverged(self.run, f"in epoch {record.get('epoch')} of the checkpoint in {checkpoint_dir}",
                           f"its mean training loss was {record.get('loss')}", self.remedy)


__all__ = ["DivergenceChecks", "TrainingDiverged", "diverged", "first_nonfinite_epoch", "nonfinite_state"]
