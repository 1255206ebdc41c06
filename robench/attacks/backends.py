"""The same attack from three implementations: ``native`` (ours), ``torchattacks``, ``art``.

:func:`craft` resolves the attack's schedule once with the native rule (FGSM: one step of
ε; IFGSM: Kurakin's steps of 1/255 unless overridden) and hands explicit numbers to the
peer, so all three compute the same update (PROTOCOL.md, "Attacks"):

* torchattacks 3.5.1 ``FGSM(model, eps)`` / ``BIM(model, eps, alpha, steps)``: gradient
  of the batch-mean CE by ``torch.autograd.grad`` w.r.t. the input, ``x + α·sign(g)``,
  then clamps to ``max(x₀−ε, 0)`` / ``min(x₀+ε, 1)`` — the same numbers as native.
  Quirks: ``BIM(steps=0)`` means "pick Kurakin's count", so 0 steps is answered here with
  the input itself; the model mode is restored only on success and with a blanket
  ``model.train()``; the device comes from the model's first parameter.
* ART 1.20.1 ``PyTorchClassifier(clip_values=(0, 1))`` with ``FastGradientMethod(norm=inf)``
  / ``BasicIterativeMethod(eps, eps_step, max_iter)``: gradient of the batch-mean CE by
  ``loss.backward()`` (after ``model.zero_grad()``, which drops the caller's ``.grad``),
  NaN gradients read as 0, ``x + α·sign(g)`` clipped to [0, 1], then the ε-projection is
  applied to the perturbation, ``x₀ + sign(δ)·min(|δ|, ε)`` — mathematically the same point,
  but the re-addition ``x₀ + (x − x₀)`` can differ from x by one float32 ulp (~6e-8).
  ART leaves the model in eval mode, moves it to its own device, works in NumPy float32
  and defaults to batches of 32 (set here to the whole batch).

Mean versus sum of the per-sample losses only rescales the gradient, so the signs agree
except where a gradient element is at float rounding level. Around every peer call the
model runs in eval mode, its parameters are frozen and their ``.grad`` and each module's
training flag are restored afterwards. The peers support only the ``ce`` attack loss.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch import nn

from robench.attacks.base import check_eps, check_inputs, create_attack, eval_mode
from robench.errors import UserError

BACKENDS = ("native", "torchattacks", "art")


def backend_names() -> list[str]:
    """The attack backends, ``native`` first."""
    return list(BACKENDS)


def craft(
    backend: str,
    attack_name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int | None = None,
    step_size: float | None = None,
    loss: str = "ce",
    model_loss: Callable | None = None,
) -> torch.Tensor:
    """Adversarial ``x`` (B, ...) by ``attack_name`` ("fgsm", "ifgsm") from ``backend``.

    Every backend runs in fp32 here (the native one too), so their results are comparable.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown attack backend {backend!r}; valid: {', '.join(BACKENDS)}")
    attack = create_attack(attack_name, loss=loss, steps=steps, step_size=step_size, model_loss=model_loss,
                           precision="fp32")
    if backend == "native":
        return attack(model, x, y, eps)
    if loss != "ce":
        raise UserError(
            f"backend {backend!r} supports only the 'ce' attack loss, not {loss!r}; "
            "use backend 'native' for other losses"
        )
    eps = check_eps(eps)
    x, y = check_inputs(x, y)
    param = next(model.parameters(), None)
    if param is not None and param.device != x.device:
        raise UserError(f"model is on {param.device} but the inputs are on {x.device}")
    n_steps, alpha = attack.schedule(eps)
    with _isolated(model):
        if backend == "torchattacks":
            adv = _torchattacks(attack.name, model, x, y, eps, n_steps, alpha)
        else:
            adv = _art(attack.name, model, x, y, eps, n_steps, alpha)
    return adv.detach().to(device=x.device, dtype=x.dtype)


def _import_peer(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise UserError(
            f"attack backend needs {package} ({err}); install the peers: pip install 'robench[peers]'"
        ) from None


@contextmanager
def _isolated(model: nn.Module) -> Iterator[None]:
    """Eval mode, frozen parameters; training flags, requires_grad and .grad restored after."""
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        for p, _, _ in saved:
            p.requires_grad_(False)
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for p, requires_grad, grad in saved:
            p.requires_grad_(requires_grad)
            p.grad = grad


def _torchattacks(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, alpha: float
) -> torch.Tensor:
    ta = _import_peer("torchattacks", "torchattacks")
    if name == "fgsm":
        attack = ta.FGSM(model, eps=eps)
    else:
        if steps == 0:  # torchattacks' BIM would replace 0 by its own step rule
            return x.clone()
        attack = ta.BIM(model, eps=eps, alpha=alpha, steps=steps)
    attack.set_device(x.device)
    return attack(x, y)


def _art(
    name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, alpha: float
) -> torch.Tensor:
    import numpy as np

    _import_peer("art", "adversarial-robustness-toolbox")
    classification = _import_peer("art.estimators.classification", "adversarial-robustness-toolbox")
    evasion = _import_peer("art.attacks.evasion", "adversarial-robustness-toolbox")
    if name != "fgsm" and steps == 0:
        return x.clone()
    with torch.no_grad():
        n_classes = model(x[:1]).shape[1]
    on_cuda = x.device.type == "cuda"
    with torch.cuda.device(x.device) if on_cuda else nullcontext():  # ART uses the current GPU
        classifier = classification.PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=n_classes,
            clip_values=(0.0, 1.0),
            preprocessing=None,
            device_type="gpu" if on_cuda else "cpu",
        )
        if name == "fgsm":
            attack = evasion.FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=len(x))
        else:
            attack = evasion.BasicIterativeMethod(
                classifier, eps=eps, eps_step=alpha, max_iter=steps, batch_size=len(x), verbose=False
            )
        x_np = x.detach().cpu().numpy().astype(np.float32)
        adv = attack.generate(x=x_np, y=y.cpu().numpy())
    return torch.from_numpy(np.asarray(adv, dtype=np.float32))
