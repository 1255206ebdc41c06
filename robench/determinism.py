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

from robench.settings import snapshot


def thread_count() -> int:
    """PyTorch's intra-op thread count in this process."""
    return torch.get_num_threads()


def determinism_settings() -> dict[str, bool]:
    """PyTorch's switches that choose kernels, as they stand in this process (read by
    :func:`robench.settings.snapshot`)."""
    now = snapshot()
    return {
        "deterministic_algorithms": now.deterministic_algorithms,
        "cudnn_deterministic": now.cudnn_deterministic,
        "cudnn_benchmark": now.cudnn_benchmark,
        "tf32": now.matmul_tf32 or now.cudnn_tf32,
    }


def settings_text(settings: dict[str, Any]) -> str:
    """``settings`` as canonical JSON, the form a stored row keeps them in."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))
