"""The same attack from three implementations: ``native`` (ours), ``torchattacks``, ``art``.

:func:`peer_attack` wraps a native :class:`~robench.attacks.attack.Attack` so a peer library
runs it: the budget is read from the native attack (its schedule's steps and step size at
each ε, restarts, random start, seed; APGD's steps, restarts, ρ and targets; Square's
queries and p_init) and handed to the peer as explicit numbers, so the peer runs the
attack asked for with the same budget, or the call is refused with a :class:`UserError`
naming what the backend runs. The wrapper is itself an :class:`Attack`: the final
``__call__``/``sweep`` check the inputs, chunk them, and project every output onto its
ε-ball and [0, 1] (a no-op for a peer that stayed feasible; it absorbs ART's rounding).

Mapping (torchattacks 3.5.1, ART 1.20.1; ``steps``, ``α`` from ``attack.schedule(ε)``):

============  ===============================================  ==================================================
attack        torchattacks                                      ART
============  ===============================================  ==================================================
fgsm          ``FGSM(eps)``                                     ``FastGradientMethod(norm=inf, eps)``
ifgsm         ``BIM(eps, alpha, steps)``                        ``BasicIterativeMethod(eps, eps_step, max_iter)``
pgd           ``PGD(eps, alpha, steps, random_start)``          ``ProjectedGradientDescent(norm=inf, eps, eps_step,
                                                                max_iter, num_random_init, random_eps=False)``
pgd-l2        ``PGDL2(eps, alpha, steps, random_start)``        ``ProjectedGradientDescent(norm=2, ...)``
fgm           ``PGDL2(eps, alpha=eps, steps=1,                  ``FastGradientMethod(norm=2, eps)``
              random_start=False)``
apgd-ce,      ``APGD(norm, eps, steps, n_restarts, seed,        ``AutoProjectedGradientDescent(norm, eps,
apgd-dlr      loss='ce'|'dlr', rho)``                           eps_step=2ε, max_iter, nb_random_init, loss_type=
(+ ``-l2``)                                                     'cross_entropy'|'difference_logits_ratio')``
apgd-t        ``APGDT(norm, eps, steps, n_restarts,             refused (below)
(+ ``-l2``)   n_classes=targets + 1, seed, rho)``
square        ``Square(norm='Linf', eps, n_queries, n_restarts, ``SquareAttack(norm=inf, eps, max_iter, p_init,
              p_init, loss='margin', seed)``                    nb_restarts)``
============  ===============================================  ==================================================

Anything else is refused: the ensembles (``worst``, ``aa``, ``worst-l2``) are not attacks
of one backend, and a peer cannot run an attack loss other than the one it implements
(``ce`` for the gradient attacks that take a loss; APGD's and Square's are fixed).

What each peer does differently from native (and why the numbers can differ):

* Both peers differentiate the batch-*mean* loss (native: the sum). That only rescales the
  gradient by 1/B: sign steps are unchanged, and L2 directions g/‖g‖ are unchanged up to
  float rounding (exactly unchanged when B is a power of two, where 1/B is exact).
* Random draws: native draws per-sample streams (a sample's result does not depend on its
  batch-mates); the peers draw from the global RNGs (torch for torchattacks, NumPy and
  Python's ``random`` for ART), seeded here with the native ``seed`` inside a forked /
  saved-and-restored RNG state, so a peer call is reproducible and leaves the caller's
  random streams alone; its result depends on the batch it is given.
* torchattacks 3.5.1: ``torch.autograd.grad`` of the loss w.r.t. the input.
  ``FGSM``/``BIM``: ``x + α·sign(g)`` clamped to ``max(x₀−ε, 0)`` / ``min(x₀+ε, 1)`` — the
  same float32 numbers as native. Quirk: ``BIM(steps=0)`` means "pick Kurakin's count",
  so 0 steps is answered here with the input itself. ``PGD`` projects as
  ``clip₀¹(x₀ + clamp(x − x₀, −ε, ε))``: the same point as native's single clamp, up to
  the rounding of the re-addition. ``PGD``/``PGDL2`` have no restarts: with
  ``restarts`` > 1 (and a random start) the wrapper reruns them on the samples no earlier
  restart fooled and keeps each sample's first adversarial point (native's rule).
  ``PGDL2`` normalises by ``‖g‖ + eps_for_division``, by default 1e-10 added to the norm
  of the batch-*mean* gradient, which shortens the steps of confidently classified
  samples (their mean-CE gradient norm is of that order): it is passed as the smallest
  normal float, a guard against 0/0 only, like native's ``max(‖g‖, 1e-12)`` on the sum.
  It computes ε/‖δ‖ as Python's ``eps / tensor``, i.e. ε·(1/‖δ‖), one rounding more than
  native's division unless ε is a power of two. Its random start (Gaussian direction,
  radius U(0, 1)·ε) has native's distribution. There is no L2 FGM: ``PGDL2`` with one
  step of α = ε from x₀ (no random start) *is* FGM — the step ``ε·g/‖g‖`` has length ε,
  so the ε-ball projection leaves it alone, and the final clip to [0, 1] is FGM's.
  ``APGD``/``APGDT`` are the authors' AutoAttack code: sum of
  per-sample losses, checkpoints after ⌊0.22 N⌋ steps then shrinking by ⌊0.03 N⌋ to at
  least ⌊0.06 N⌋ (native: ⌈p_j N⌉), a random start on the surface of the ε-ball (native:
  uniform inside), restarts only on the samples not fooled, misclassified samples
  returned as they are. They reseed the global torch RNG themselves (forked here).
  ``APGDT(n_classes=K)`` attacks K − 1 targets, so ``targets`` t is passed as
  ``n_classes = min(t, K − 1) + 1``. ``Square``'s ``n_queries`` counts iterations (one
  proposal and one query each) after a clean query and the stripes start; native's
  ``queries`` counts every evaluation per sample and restart, the clean one and the
  stripes included, so ``n_queries = queries − 2`` (its later restarts then make one
  proposal fewer than native's). The model mode is restored only on success and with a
  blanket ``model.train()``; the device comes from the model's first parameter (set here).
* ART 1.20.1, ``PyTorchClassifier(clip_values=(0, 1))``: gradient by ``loss.backward()``
  (after ``model.zero_grad()``, which drops the caller's ``.grad``: restored here), NaN
  gradients read as 0, ``x + α·d`` clipped to [0, 1], then the ε-projection of the
  perturbation, ``x₀ + sign(δ)·min(|δ|, ε)`` (L∞; computed in float64 and rounded to
  float32) or ``x₀ + δ·min(1, ε/‖δ‖)`` (L2). For L∞ (and for one L2 step from x₀, FGM)
  that is mathematically native's point, but the re-addition ``x₀ + (x − x₀)`` can
  differ from x by one float32 ulp (~6e-8). For L2 PGD the order matters: ART clips to
  [0, 1] *before* the ε-ball projection, native and torchattacks after it, so from the
  second step on ART's iterates are other (feasible) points.
  ``FastGradientMethod`` works in NumPy, ``BasicIterativeMethod``/
  ``ProjectedGradientDescent`` in torch (``ProjectedGradientDescentPyTorch``). PGD's random
  start is drawn inside its first step (0 steps: x itself), uniform in the L∞ box or
  uniform in the *volume* of the L2 ball (native: radius uniform); with restarts, the
  first run's result is kept and later runs overwrite it where they succeed.
  ``AutoProjectedGradientDescent`` is ART's own loop (NumPy): ε and max_iter must be > 0,
  ρ = 0.75 is hard-coded (native's ρ is that too; another is refused), a random start
  uniform in the ball on every run, checkpoints ⌈p_j N⌉, a sample keeps its *last*
  iterate if that is misclassified (native: the first adversarial point found), its DLR
  has no 1e-12 in the denominator, and a run stops early when every loss is 0.
  ``SquareAttack``: ``max_iter`` iterations of one proposal each, so
  ``max_iter = queries − 2`` as for torchattacks, but ART spends three model
  evaluations per iteration (criterion, current loss, candidate loss) and keeps the
  stripes start only where it lowers the margin (the paper always takes it); its first
  square must be smaller than the image (ART draws its corner with ``randint(0, h − s)``).
  ART puts the model in eval mode and on its own device (the current CUDA device: set
  here from the inputs), works in float32 only, and defaults to batches of 32 (set here
  to the whole batch).
* Square differs in two details in both peers: a square's corner is drawn by
  ``randint(0, h − s)``, never h − s (native: uniform in {0, …, h − s}), so after the
  stripes start no square ever covers the last row and column of the image; and a
  proposal that leaves the point unchanged (the square already has the drawn signs) is
  evaluated anyway, where native redraws the signs (as the authors' code does, see
  :mod:`robench.attacks.square`). Both make the peers weaker at the same budget: about 9
  points of robust accuracy on 8×8 one-channel digits at 300 queries; with a model that
  ignores the last row and column, on three-channel inputs (where an unchanged proposal
  is rare), they agree with native within a few points.
* APGD-T on ART is refused: ART's targeted APGD needs target labels and minimises its
  untargeted DLR of the target label, ``−(z_t − max_{j≠t} z_j)/(z_π1 − z_π3)``, or the
  targeted CE, not Croce & Hein's targeted DLR ``−(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2)``
  over the top ``targets`` classes; looping it over target classes would run another
  attack under APGD-T's name.

ε = 0 (the ball is {x₀}) is answered with the input without calling a peer (ART's APGD
and Square refuse it). A chunk holding several ε values (a per-sample ε) is split into
groups of one ε, one peer call each. Around every peer call the model runs in eval mode,
its parameters are frozen and their ``.grad``, ``requires_grad`` and each module's
training flag are restored afterwards; the peers run the model in its own dtype with no
autocast (fp32 for an fp32 model, whatever the native attack's ``precision``). The
wrapper counts no image-steps or queries (``last_sweep_image_steps`` stays 0).
"""

from __future__ import annotations

import importlib
import math
import random
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch import nn

from robench.attacks.attack import Attack, Budget, create_attack
from robench.attacks.checks import eval_mode
from robench.errors import UserError

BACKENDS = ("native", "torchattacks", "art")

#: The attacks each peer backend runs (by robench name), in the order they are listed.
PEER_ATTACKS: dict[str, tuple[str, ...]] = {
    "torchattacks": ("fgsm", "ifgsm", "pgd", "pgd-l2", "fgm", "apgd-ce", "apgd-dlr", "apgd-t",
                     "apgd-ce-l2", "apgd-dlr-l2", "apgd-t-l2", "square"),
    "art": ("fgsm", "ifgsm", "pgd", "pgd-l2", "fgm", "apgd-ce", "apgd-dlr", "apgd-ce-l2", "apgd-dlr-l2",
            "square"),
}
_ART_NO_APGD_T = ("ART's targeted APGD minimises its DLR of a given target label, not APGD-T's targeted DLR over "
                  "the most likely classes")
#: Why a backend lacks an attack of robench's, where there is more to say than "not there".
_WHY_NOT = {("art", "apgd-t"): _ART_NO_APGD_T, ("art", "apgd-t-l2"): _ART_NO_APGD_T}
#: Attacks whose only loss the peers implement is the one they are given (``ce``).
_CE_ONLY = ("fgsm", "ifgsm", "pgd", "pgd-l2", "fgm")
#: The fixed loss of each APGD / Square attack (checked, so a renamed loss is not run silently).
_FIXED_LOSS = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted", "apgd-ce-l2": "ce",
               "apgd-dlr-l2": "dlr", "apgd-t-l2": "dlr-targeted", "square": "margin"}
#: ρ of APGD that ART hard-codes.
_ART_RHO = 0.75


def backend_names() -> list[str]:
    """The attack backends, ``native`` first."""
    return list(BACKENDS)


def check_backend(backend: str) -> str:
    """``backend`` if it is one of :data:`BACKENDS`; a UserError naming them otherwise."""
    if backend not in BACKENDS:
        raise UserError(f"unknown attack backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return backend


def check_peer_runs(backend: str, attack_name: str) -> None:
    """A one-line UserError unless the peer ``backend`` runs ``attack_name``."""
    runs = PEER_ATTACKS[backend]
    if attack_name not in runs:
        why = _WHY_NOT.get((backend, attack_name))
        raise UserError(f"backend {backend!r} has no {attack_name}; it runs: {', '.join(runs)}"
                        + (f" ({why})" if why else ""))


def peer_attack(backend: str, attack: Attack) -> Attack:
    """``attack`` run by ``backend``: the attack itself for ``native``, else a
    :class:`PeerAttack` that hands the native budget to the peer library.

    A UserError (one line, naming the valid choices) if the peer does not run this attack
    with this loss and budget. A :class:`PeerAttack` given is unwrapped first.
    """
    check_backend(backend)
    if isinstance(attack, PeerAttack):  # re-wrap the native attack, never a wrapper
        attack = attack.native
    if backend == "native":
        return attack
    name = attack.name
    check_peer_runs(backend, name)
    loss = attack.loss.name
    if name in _CE_ONLY and loss != "ce":
        raise UserError(f"backend {backend!r} supports only the 'ce' attack loss for {name}, not {loss!r}; "
                        "use backend 'native' for other losses")
    if name in _FIXED_LOSS and loss != _FIXED_LOSS[name]:
        raise UserError(f"backend {backend!r} runs {name} with the {_FIXED_LOSS[name]!r} loss only, not {loss!r}")
    if backend == "art" and name.startswith("apgd") and not math.isclose(getattr(attack, "rho", _ART_RHO), _ART_RHO):
        raise UserError(f"backend 'art' runs {name} with rho = {_ART_RHO} only (hard-coded in ART), not "
                        f"{attack.rho!r}; use backend 'native' or 'torchattacks'")
    return PeerAttack(backend, attack)


def craft(
    backend: str,
    attack_name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    **options: Any,
) -> torch.Tensor:
    """Adversarial ``x`` (B, ...) by ``attack_name`` (with ``options``, see
    :func:`~robench.attacks.attack.create_attack`) run by ``backend``.

    The attack's ``precision`` defaults to ``fp32`` here (the peers always run fp32), so
    the backends' results are comparable.
    """
    check_backend(backend)
    if backend != "native":
        check_peer_runs(backend, attack_name)  # before create_attack: the peer's list, not the registry's
    options.setdefault("precision", "fp32")
    return peer_attack(backend, create_attack(attack_name, **options))(model, x, y, eps)


# ---- the wrapper ---------------------------------------------------------------------------
class PeerAttack(Attack):
    """A native attack run by a peer library (``torchattacks`` or ``art``) with the native
    attack's budget; :meth:`budget` is the native one. Build it with :func:`peer_attack`."""

    def __init__(self, backend: str, attack: Attack) -> None:
        if backend not in PEER_ATTACKS:
            raise UserError(f"unknown peer backend {backend!r}; valid: {', '.join(PEER_ATTACKS)}")
        check_peer_runs(backend, attack.name)
        self.backend = backend
        self.native = attack
        self.name = attack.name
        self.norm_name = attack.norm.name
        self.deterministic = attack.deterministic  # random exactly when the native attack is
        super().__init__(batch_size=attack.batch_size, precision="fp32",
                         seed=None if attack.deterministic else attack.seed)
        self.loss = attack.loss

    def budget(self, eps: float) -> Budget:
        return self.native.budget(eps)

    def __repr__(self) -> str:
        return f"PeerAttack({self.backend!r}, {self.name!r}, {self.native!r})"

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """One peer call per ε of the chunk; ε = 0 leaves the samples as they are."""
        param = next(model.parameters(), None)
        if param is not None and param.device != x.device:
            raise UserError(f"model is on {param.device} but the inputs are on {x.device}")
        if self.backend == "art" and x.dtype != torch.float32:
            raise UserError(f"backend 'art' works in float32 only; the inputs are {x.dtype}")
        groups: dict[float, list[int]] = {}
        for i, e in enumerate(eps):
            groups.setdefault(e, []).append(i)
        out = x.clone()  # (N, ...)
        run = _torchattacks if self.backend == "torchattacks" else _art
        with _isolated(model), _seeded(None, x.device):  # no peer draw moves the caller's RNGs
            for e in sorted(groups):
                if e == 0:
                    continue
                rows = groups[e]
                if len(rows) == len(x):
                    adv = run(self.native, model, x, y, e)
                    out = adv.detach().to(device=x.device, dtype=x.dtype)
                else:
                    idx = torch.tensor(rows, device=x.device)
                    adv = run(self.native, model, x.index_select(0, idx), y.index_select(0, idx), e)
                    out.index_copy_(0, idx, adv.detach().to(device=x.device, dtype=x.dtype))
        return out


# ---- shared helpers ------------------------------------------------------------------------
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


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """The global torch, NumPy and Python RNGs seeded with ``seed`` (if not None), and every
    one of them restored afterwards, so a peer's draws leave the caller's streams alone."""
    import numpy as np

    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() or device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=cuda):
            if seed is not None:
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _n_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def _square_iterations(attack: Attack) -> int:
    """The peers' Square iterations for native's ``queries`` (clean query and stripes included)."""
    return attack.queries - 2


def _restarted(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], model: nn.Module, x: torch.Tensor,
               y: torch.Tensor, restarts: int) -> torch.Tensor:
    """``run`` (x, y) → adv repeated ``restarts`` times on the samples no earlier run fooled;
    a sample keeps its first adversarial point (its last run's point if none is)."""
    best = run(x, y).detach()
    if restarts == 1:
        return best
    best = best.clone()
    with torch.no_grad():
        alive = (model(best).argmax(dim=1) == y).nonzero().flatten()
    for _ in range(restarts - 1):
        if len(alive) == 0:
            break
        adv = run(x.index_select(0, alive), y.index_select(0, alive)).detach()
        best.index_copy_(0, alive, adv)
        with torch.no_grad():
            alive = alive[model(adv).argmax(dim=1) == y.index_select(0, alive)]
    return best


# ---- torchattacks 3.5.1 ----------------------------------------------------------------------
def _torchattacks(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """``attack``'s peer in torchattacks on ``x`` (n, ...) at one ``eps`` > 0."""
    ta = _import_peer("torchattacks", "torchattacks")
    name = attack.name

    def call(peer: Any, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        peer.set_device(x.device)
        return peer(xs, ys)

    if name == "fgsm":
        return call(ta.FGSM(model, eps=eps), x, y)
    if name == "fgm":  # one L2 step of length ε from x₀ is FGM (module docstring)
        return call(ta.PGDL2(model, eps=eps, alpha=eps, steps=1, random_start=False,
                             eps_for_division=_tiny(x)), x, y)
    if name == "ifgsm":
        steps, alpha = attack.schedule(eps)
        if steps == 0:  # torchattacks' BIM would replace 0 by its own step rule
            return x.clone()
        return call(ta.BIM(model, eps=eps, alpha=alpha, steps=steps), x, y)
    if name in ("pgd", "pgd-l2"):
        steps, alpha = attack.schedule(eps)
        if name == "pgd":
            peer = ta.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=attack.random_start)
        else:
            peer = ta.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=attack.random_start,
                            eps_for_division=_tiny(x))
        if not attack.random_start:  # restarts from x₀ would repeat the same run
            return call(peer, x, y)
        with _seeded(attack.seed, x.device):
            return _restarted(lambda xs, ys: call(peer, xs, ys), model, x, y, attack.restarts)
    norm = "Linf" if attack.norm.name == "linf" else "L2"
    if name.startswith("apgd"):
        _check_images(x, name, "torchattacks")
        if attack.targeted:
            from robench.attacks.losses import check_dlr_classes

            n_classes = _n_classes(model, x)
            check_dlr_classes(n_classes, 4, "targeted DLR")
            peer = ta.APGDT(model, norm=norm, eps=eps, steps=attack.steps, n_restarts=attack.restarts,
                            seed=attack.seed, eot_iter=1, rho=attack.rho, verbose=False,
                            n_classes=min(attack.targets, n_classes - 1) + 1)
        else:
            if attack.loss.name == "dlr":
                from robench.attacks.losses import check_dlr_classes

                check_dlr_classes(_n_classes(model, x))
            peer = ta.APGD(model, norm=norm, eps=eps, steps=attack.steps, n_restarts=attack.restarts,
                           seed=attack.seed, loss=attack.loss.name, eot_iter=1, rho=attack.rho, verbose=False)
        with _seeded(attack.seed, x.device):
            return call(peer, x, y)
    if name == "square":
        _check_images(x, name, "torchattacks")
        iterations = _square_iterations(attack)
        if iterations < 0:  # native spends its one query on the clean input
            return x.clone()
        peer = ta.Square(model, norm="Linf", eps=eps, n_queries=iterations, n_restarts=attack.restarts,
                         p_init=attack.p_init, loss="margin", resc_schedule=True, seed=attack.seed, verbose=False)
        with _seeded(attack.seed, x.device):
            return call(peer, x, y)
    raise AssertionError(f"no torchattacks mapping for {name}")  # PEER_ATTACKS lists only mapped names


def _tiny(x: torch.Tensor) -> float:
    """PGDL2's guard added to ‖g‖: the smallest normal float of x's dtype, so that it only
    keeps g = 0 from 0/0 (its default 1e-10, added to the norm of the batch-*mean*
    gradient, shortens the steps of confidently classified samples: module docstring)."""
    return torch.finfo(x.dtype).tiny


def _check_images(x: torch.Tensor, name: str, backend: str) -> None:
    if x.ndim != 4:
        raise UserError(f"backend {backend!r} runs {name} on images (N, C, H, W) only, got shape {tuple(x.shape)}")


# ---- ART 1.20.1 --------------------------------------------------------------------------------
def _art(attack: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """``attack``'s peer in ART on ``x`` (n, ...) at one ``eps`` > 0."""
    import numpy as np

    _import_peer("art", "adversarial-robustness-toolbox")
    classification = _import_peer("art.estimators.classification", "adversarial-robustness-toolbox")
    evasion = _import_peer("art.attacks.evasion", "adversarial-robustness-toolbox")
    name = attack.name
    norm = np.inf if attack.norm.name == "linf" else 2
    n, eps = len(x), float(eps)
    seed: int | None = None
    if name in ("ifgsm", "pgd", "pgd-l2"):
        steps, alpha = attack.schedule(eps)
        if steps == 0 and name == "ifgsm":
            return x.clone()
    if name.startswith("apgd") or name == "square":
        _check_images(x, name, "art")
        if name == "apgd-dlr" or name == "apgd-dlr-l2":
            from robench.attacks.losses import check_dlr_classes

            check_dlr_classes(_n_classes(model, x))
    if name == "square":
        iterations = _square_iterations(attack)
        if iterations < 1:
            raise UserError(f"backend 'art' runs square with at least 3 queries (ART needs one iteration), "
                            f"not {attack.queries}")
        side = max(int(round(math.sqrt(attack.p_init * x.shape[2] * x.shape[3]))), 1)
        if side >= min(x.shape[2], x.shape[3]):
            raise UserError(f"backend 'art' cannot run square with p_init={attack.p_init} on "
                            f"{x.shape[2]}x{x.shape[3]} images: its first square ({side} pixels) must be smaller "
                            "than the image; use a smaller p_init")
    on_cuda = x.device.type == "cuda"
    with torch.cuda.device(x.device) if on_cuda else nullcontext():  # ART uses the current GPU
        classifier = classification.PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            input_shape=tuple(x.shape[1:]),
            nb_classes=_n_classes(model, x),
            clip_values=(0.0, 1.0),
            preprocessing=None,
            device_type="gpu" if on_cuda else "cpu",
        )
        if name in ("fgsm", "fgm"):
            peer = evasion.FastGradientMethod(classifier, norm=norm, eps=eps, eps_step=eps, num_random_init=0,
                                              batch_size=n)
        elif name == "ifgsm":
            peer = evasion.BasicIterativeMethod(classifier, eps=eps, eps_step=alpha, max_iter=steps, batch_size=n,
                                                verbose=False)
        elif name in ("pgd", "pgd-l2"):
            peer = evasion.ProjectedGradientDescent(
                classifier, norm=norm, eps=eps, eps_step=alpha, max_iter=steps,
                num_random_init=attack.restarts if attack.random_start else 0, batch_size=n, random_eps=False,
                verbose=False,
            )
            seed = attack.seed if attack.random_start else None
        elif name.startswith("apgd"):
            loss_type = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}[attack.loss.name]
            peer = evasion.AutoProjectedGradientDescent(
                classifier, norm=norm, eps=eps, eps_step=2 * eps, max_iter=attack.steps, targeted=False,
                nb_random_init=attack.restarts, batch_size=n, loss_type=loss_type, verbose=False,
            )
            seed = attack.seed
        elif name == "square":
            peer = evasion.SquareAttack(classifier, norm=np.inf, max_iter=_square_iterations(attack), eps=eps,
                                        p_init=attack.p_init, nb_restarts=attack.restarts, batch_size=n,
                                        verbose=False)
            seed = attack.seed
        else:
            raise AssertionError(f"no ART mapping for {name}")  # PEER_ATTACKS lists only mapped names
        x_np = x.detach().cpu().numpy().astype(np.float32)
        with _seeded(seed, x.device), warnings.catch_warnings():
            # ART 1.20.1 converts torch tensors with np.array(copy=False): NumPy 2 warns
            warnings.simplefilter("ignore", DeprecationWarning)
            adv = peer.generate(x=x_np, y=y.cpu().numpy())
    return torch.from_numpy(np.asarray(adv, dtype=np.float32))
