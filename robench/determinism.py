"""What decides a result's bits besides its seeds: the thread count and PyTorch's
determinism settings (docs/protocol.md, "Determinism").

Seeded CPU training is bit-identical only at the same intra-op thread count: a reduction
split over another number of threads adds its terms in another order, and the rounding
differences grow over training into other weights. On CUDA, cuDNN's autotuning
(``benchmark``), its ``deterministic`` switch, PyTorch's deterministic-algorithms mode
and TF32 decide which kernels run. Every card and every stored row records them, so two
numbers that differ can be traced to the setting that made them differ.
"""

from __future__ import annotations

import json
from typing import Any

import torch


def thread_count() -> int:
    """PyTorch's intra-op thread count in this process."""
    return torch.get_num_threads()


def determinism_settings() -> dict[str, bool]:
    """PyTorch's switches that choose kernels, as they stand in this process."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
    }


def settings_text(settings: dict[str, Any]) -> str:
    """``settings`` as canonical JSON, the form a stored row keeps them in."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
