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


PRECISION_CHOICES = ("auto", "fp32", "bf16")
_default_precision = "auto"


def _checked_precision(name: str) -> str:
    """``name`` if it is one of PRECISION_CHOICES, else a UserError listing them."""
    if name not in PRECISION_CHOICES:
        raise UserError(f"unknown precision {name!r}; valid: {', '.join(PRECISION_CHOICES)}")
    return name


def set_default_precision(name: str) -> None:
    """What ``auto`` means for this process (the CLI's ``--precision``)."""
    global _default_precision
    _default_precision = _checked_precision(name)


def default_precision() -> str:
    """What ``auto`` means for this process (:func:`set_default_precision`)."""
    return _default_precision


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` → the process default set by :func:`set_default_precision`, which is
    itself ``auto`` unless the CLI's ``--precision`` says otherwise: ``bf16`` on CUDA,
    ``fp32`` elsewhere. ``fp32``/``bf16`` as asked.

    ``bf16`` means bf16 autocast for the model's matrix work; losses are computed and
    summed in fp32 and parameters, optimizer state and pixels stay fp32.
    """
    if _checked_precision(name) == "auto":
        name = _default_precision
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context of a resolved ``precision`` (disabled for ``fp32``).

    The weight cache is off so the context can sit inside a captured CUDA graph.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


def use_ieee_fp32() -> None:
    """Make fp32 mean IEEE fp32 on CUDA: PyTorch runs fp32 cuDNN convolutions in TF32 by
    default (10-bit mantissa products), so an "fp32" attack or defender pass would not be
    one. The CLI calls this once; bf16 autocast work is unaffected."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


_compile_training = False


def set_compile_training(enabled: bool) -> None:
    """Whether training runs its forward through ``torch.compile`` (the CLI's ``--compile``)."""
    global _compile_training
    _compile_training = bool(enabled)


def compile_training() -> bool:
    """The process default of :func:`set_compile_training` (off unless asked)."""
    return _compile_training
