"""Predictions and accuracy of a model on uint8 image tensors, in eval mode."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,  # (N, C, H, W) uint8
    to_float: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
) -> torch.Tensor:  # (N,) int64 predicted classes
    """Arg-max predictions in eval mode; the model's previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        parts = [
            model(to_float(images[i : i + batch_size].to(device))).argmax(dim=1)
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)
    finally:
        model.train(was_training)


def accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,  # (N,)
    to_float: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
) -> float:
    """Fraction of ``images`` classified as ``labels``."""
    if len(labels) == 0:
        return float("nan")
    preds = predict(model, images, to_float, batch_size)
    return (preds == labels.to(preds.device)).float().mean().item()
