"""RMSProp with TensorFlow 1.15 ``tf.train.RMSPropOptimizer`` semantics (non-centered).

PROTOCOL.md "Training": the paper trains with TF's RMSProp. PyTorch's
``torch.optim.RMSprop`` differs (alpha 0.99, eps added *outside* the square root,
mean-square accumulator starting at 0, so the first steps are ~1/sqrt(1 − α) ≈ 10× larger)
and diverges at the paper's learning rates. Per parameter θ with gradient g:

    ms  ← ρ · ms + (1 − ρ) · g²                 (ms starts at 1.0: TF's ones initializer)
    mom ← m · mom + lr · g / sqrt(ms + ε)       (mom starts at 0)
    θ   ← θ − mom

with ρ = ``decay`` = 0.9, ε = ``eps`` = 1e-10 and m = ``momentum`` (default 0.0).

``lr`` may be a float or a 0-dim tensor. With a tensor (on the parameters' device) the
step never reads it on the host, so a CUDA graph can capture ``step()`` while a schedule
updates the tensor in place (:meth:`RMSPropTF.set_lr` does ``lr.fill_(value)``; never
assign a new Python float to ``group["lr"]`` of a captured optimizer). State is created
lazily at the first ``step()`` (run one eager step, or a warm-up, before capturing).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch.optim import Optimizer


class RMSPropTF(Optimizer):
    """TF 1.15 RMSProp (see the module docstring for the update rule).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, a float or a 0-dim tensor (same device as the parameters for
            graph capture).
        decay: ρ, the mean-square discount (TF ``decay``), default 0.9.
        momentum: m, default 0.0.
        eps: ε inside the square root, default 1e-10.
        foreach: use ``torch._foreach_*`` kernels (default True).

    State per parameter: ``square_avg`` (ms, starts at 1.0) and ``momentum_buffer``
    (mom, starts at 0).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | torch.Tensor = 0.01,
        decay: float = 0.9,
        momentum: float = 0.0,
        eps: float = 1e-10,
        foreach: bool = True,
    ) -> None:
        if isinstance(lr, torch.Tensor):
            if lr.numel() != 1 or lr.dim() != 0:
                raise ValueError("a tensor learning rate must be 0-dimensional")
        elif not lr >= 0.0:
            raise ValueError(f"invalid learning rate {lr!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"invalid decay {decay!r}; must be in [0, 1]")
        if not momentum >= 0.0:
            raise ValueError(f"invalid momentum {momentum!r}")
        if not eps >= 0.0:
            raise ValueError(f"invalid epsilon {eps!r}")
        defaults = dict(lr=lr, decay=decay, momentum=momentum, eps=eps, foreach=foreach)
        super().__init__(params, defaults)

    def set_lr(self, value: float) -> None:
        """Set every group's learning rate; a tensor ``lr`` is updated in place."""
        for group in self.param_groups:
            lr = group["lr"]
            if isinstance(lr, torch.Tensor):
                lr.fill_(value)
            else:
                group["lr"] = float(value)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        square_avgs: list[torch.Tensor],
        moms: list[torch.Tensor],
    ) -> None:
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("RMSPropTF does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:
                # TF initialises the mean-square slot with ones and the momentum slot
                # with zeros.
                state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                state["momentum_buffer"] = torch.zeros_like(
                    p, memory_format=torch.preserve_format
                )
            params.append(p)
            grads.append(p.grad)
            square_avgs.append(state["square_avg"])
            moms.append(state["momentum_buffer"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; no host synchronisation."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            square_avgs: list[torch.Tensor] = []
            moms: list[torch.Tensor] = []
            self._init_group(group, params, grads, square_avgs, moms)
            if not params:
                continue
            update = _foreach_update if group["foreach"] else _single_tensor_update
            # foreach kernels need one device and dtype per list
            for key, idx in _group_by_device_dtype(params).items():
                update(
                    [params[i] for i in idx],
                    [grads[i] for i in idx],
                    [square_avgs[i] for i in idx],
                    [moms[i] for i in idx],
                    lr=group["lr"],
                    decay=group["decay"],
                    momentum=group["momentum"],
                    eps=group["eps"],
                )
        return loss


def _group_by_device_dtype(tensors: list[torch.Tensor]) -> dict[tuple[Any, Any], list[int]]:
    groups: dict[tuple[Any, Any], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


def _foreach_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    moms: list[torch.Tensor],
    *,
    lr: float | torch.Tensor,
    decay: float,
    momentum: float,
    eps: float,
) -> None:
    # ms ← ρ·ms + (1 − ρ)·g²
    torch._foreach_mul_(square_avgs, decay)
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1.0 - decay)
    # step = lr · g / sqrt(ms + ε)
    denom = torch._foreach_add(square_avgs, eps)
    torch._foreach_sqrt_(denom)
    step = torch._foreach_div(grads, denom)
    # a 0-dim tensor lr is read on the device (no host sync); a float is a scalar
    torch._foreach_mul_(step, lr if isinstance(lr, torch.Tensor) else float(lr))
    # mom ← m·mom + step;  θ ← θ − mom
    if momentum != 0.0:
        torch._foreach_mul_(moms, momentum)
        torch._foreach_add_(moms, step)
    else:
        torch._foreach_copy_(moms, step)
    torch._foreach_sub_(params, moms)


def _single_tensor_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    square_avgs: list[torch.Tensor],
    moms: list[torch.Tensor],
    *,
    lr: float | torch.Tensor,
    decay: float,
    momentum: float,
    eps: float,
) -> None:
    for p, g, ms, mom in zip(params, grads, square_avgs, moms):
        ms.mul_(decay).addcmul_(g, g, value=1.0 - decay)
        step = g / (ms + eps).sqrt()
        step.mul_(lr)
        mom.mul_(momentum).add_(step)
        p.sub_(mom)
