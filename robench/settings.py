"""The process-wide settings robench reads or changes, read and written as one value.

A run's bits depend on the thread count and PyTorch's kernel switches
(:mod:`robench.determinism`), and the CLI changes some of them for its own process: it
turns TF32 off (:func:`robench.device.use_ieee_fp32`) and sets what ``--precision auto``
and ``--compile`` mean. :func:`snapshot` reads all of them, :func:`restore` writes a
snapshot back, switch by switch, through PyTorch's own setters; :func:`preserved` does
both around a block, so a caller of :func:`robench.cli.main` in a Python process gets its
settings back however the command ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch

from robench import device


@dataclass(frozen=True)
class ProcessSettings:
    """Every process-wide setting robench reads or changes."""

    threads: int  # torch.get_num_threads()
    deterministic_algorithms: bool  # torch.use_deterministic_algorithms
    deterministic_warn_only: bool  # its warn_only flag
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    cudnn_tf32: bool  # torch.backends.cudnn.allow_tf32
    matmul_tf32: bool  # torch.backends.cuda.matmul.allow_tf32
    default_precision: str  # robench.device.default_precision()
    compile_training: bool  # robench.device.compile_training()


def snapshot() -> ProcessSettings:
    """The settings as they stand in this process."""
    return ProcessSettings(
        threads=torch.get_num_threads(),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        cudnn_tf32=bool(torch.backends.cudnn.allow_tf32),
        matmul_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
        default_precision=device.default_precision(),
        compile_training=device.compile_training(),
    )


def restore(settings: ProcessSettings) -> None:
    """Write every setting of ``settings`` back into this process."""
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(settings.deterministic_algorithms,
                                       warn_only=settings.deterministic_warn_only)
    torch.backends.cudnn.deterministic = settings.cudnn_deterministic
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = settings.cudnn_tf32
    torch.backends.cuda.matmul.allow_tf32 = settings.matmul_tf32
    device.set_default_precision(settings.default_precision)
    device.set_compile_training(settings.compile_training)


def differences(before: ProcessSettings, after: ProcessSettings) -> list[str]:
    """``name: before -> after`` for each setting that differs, in declaration order."""
    return [f"{f.name}: {getattr(before, f.name)!r} -> {getattr(after, f.name)!r}"
            for f in fields(ProcessSettings) if getattr(before, f.name) != getattr(after, f.name)]


@contextmanager
def preserved() -> Iterator[ProcessSettings]:
    """Run a block and give the process its settings back afterwards, however it ends;
    yields the settings as they were on entry."""
    before = snapshot()
    try:
        yield before
    finally:
        restore(before)
