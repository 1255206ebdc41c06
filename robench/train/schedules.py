"""Learning-rate schedules of the paper (§IV-B; PROTOCOL.md "Training").

* mnist / fashion-mnist: 0.01 constant → ``step_decay_lr(0.01, 1.0, ...)``.
* cifar10: 0.1, × 0.5 every 6,000 optimizer steps → ``decay=0.5, decay_steps=6000``.
* imagenet32: 0.01, × 0.2 every 10 epochs, counted as steps of the whole training split
  → ``decay=0.2, decay_steps=IMAGENET32_DECAY_STEPS`` (50,040; robench.presets).
  ``decay_epochs`` remains for schedules counted in epochs.
"""

from __future__ import annotations


def step_decay_lr(
    base_lr: float,
    decay: float,
    step: int,
    epoch: int,
    decay_steps: int = 0,
    decay_epochs: int = 0,
) -> float:
    """``base_lr · decay^(step // decay_steps) · decay^(epoch // decay_epochs)``.

    ``step`` counts completed optimizer steps and ``epoch`` completed epochs (both from
    0); a period of 0 turns that factor off.
    """
    k_steps = step // decay_steps if decay_steps else 0
    k_epochs = epoch // decay_epochs if decay_epochs else 0
    return float(base_lr * decay**k_steps * decay**k_epochs)
