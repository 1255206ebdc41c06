"""Device selection for ``--device auto|cpu|cuda``."""

from __future__ import annotations

import torch

from robench.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda when available else cpu; ``cuda`` without a GPU is a UserError."""
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown device {name!r}; valid: {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available; use cpu or auto")
    return torch.device(name)
