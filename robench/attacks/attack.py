"""The attack interface every robench attack implements (the shape of foolbox's
``attacks/base.py``): a final :meth:`Attack.__call__` and :meth:`Attack.sweep` own what
is common, and a subclass only says how one chunk of samples is perturbed.

The final methods own the rest, for every attack alike:

* input checks (:mod:`robench.attacks.checks`): pixels in [0, 1], integer labels, each
  ε within its norm's range;
* the model in eval mode (each module's own mode restored afterwards, also on error),
  gradients with respect to the input only (``torch.autograd.grad``, so parameters'
  ``.grad`` is never touched), the input tensor never modified;
* chunking into ``batch_size`` samples, and at the end the projection of every output
  onto its ε-ball and the [0, 1] box (:class:`robench.attacks.norms.Ball`), so no attack
  can return a point outside its threat model;
* per-sample bookkeeping: the input-gradient rows (``last_sweep_image_steps``) and the
  model queries (``last_sweep_queries``) of the last sweep, and per-sample random
  streams, so a random attack's result for a sample does not depend on its batch-mates
  (:meth:`Attack.sample_noise`).

An ε-sweep is computed by a strategy the attack qualifies for
(:mod:`robench.attacks.sweeps`); by default each ε is attacked on its own.

Precision: ``precision="auto"`` runs the model's forward under bf16 autocast on CUDA and
in fp32 elsewhere (:func:`robench.device.resolve_precision`); ``"fp32"``/``"bf16"`` force
it. Only the model's matrix work is bf16: losses are computed on ``logits.float()`` and
summed in fp32, and pixels, steps and clamps stay in the input's dtype.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from robench.attacks.checks import check_inputs, eval_mode
from robench.attacks.losses import AttackLoss, create_attack_loss
from robench.attacks.norms import get_norm
from robench.bounds import MAX_BATCH_SIZE, MAX_SEED, above_bound, shown_count
from robench.device import autocast, resolve_precision
from robench.errors import UserError
from robench.registry import Registry

DEFAULT_BATCH_SIZE = 4096

Eps = float | torch.Tensor


@dataclass(frozen=True)
class Budget:
    """What an attack spends at one ε, as its result records state it."""

    steps: int
    step_size: float
    restarts: int = 1
    queries: int | None = None
    seed: int | None = None


def check_count(value: object, what: str, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an integer from ``minimum`` to ``maximum`` (its bound,
    :mod:`robench.bounds`; None: none); a UserError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{what} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise UserError(above_bound(what, shown_count(value), maximum))
    return value


def check_positive(value: object, what: str) -> float:
    """``value`` as a finite float > 0; a UserError naming ``what`` otherwise."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a positive number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise UserError(f"{what} must be a positive number, got {value!r}")
    return number


class Attack:
    """An attack on a classifier: subclasses implement :meth:`_perturb` and :meth:`budget`."""

    name = "attack"
    norm_name = "linf"
    #: One step from x₀: an ε-sweep may share one gradient (FGSM, FGM).
    single_step = False
    #: No random draw: the output is a function of the inputs.
    deterministic = True
    #: Steps are α · sign(∇) (L∞ gradient-sign attacks).
    sign_step = False
    #: An ε-sweep attacks only the points no smaller ε broke (the worst-case ensembles).
    nested_eps = False
    #: The attack loss it ascends when it does not take one (APGD-DLR: "dlr").
    fixed_loss: str | None = None

    def __init__(
        self,
        loss: str | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        check_count(batch_size, "attack batch size", 1, MAX_BATCH_SIZE)
        resolve_precision(precision, torch.device("cpu"))  # the name only; resolved per device at use
        if self.fixed_loss is not None and loss not in (None, self.fixed_loss):
            raise UserError(f"attack {self.name!r} ascends the {self.fixed_loss} loss and takes no other "
                            f"(got attack loss {loss!r})")
        if seed is not None:
            check_count(seed, "attack seed", 0, MAX_SEED)
        self.norm = get_norm(self.norm_name)
        self.loss: AttackLoss = create_attack_loss(loss or self.fixed_loss or "ce", model_loss=model_loss)
        self.batch_size = batch_size
        self.precision = precision
        self.seed = (0 if seed is None else seed) if not self.deterministic else None
        #: Input-gradient rows (image-steps) the last :meth:`sweep` computed.
        self.last_sweep_image_steps = 0
        #: Model forward rows without a gradient (queries) the last :meth:`sweep` computed.
        self.last_sweep_queries = 0
        self._grad_rows = 0
        self._query_rows = 0

    def budget(self, eps: float) -> Budget:
        """Steps, step size, restarts, queries and seed at budget ``eps``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(loss={self.loss.name!r}, norm={self.norm.name!r}, "
                f"batch_size={self.batch_size}, precision={self.precision!r}, seed={self.seed})")

    # ---- the final public API ------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: Eps) -> torch.Tensor:
        """Adversarial ``x`` (B, ...) for labels ``y`` (B,) and ε (a float or a tensor (B,)).

        Batches larger than ``batch_size`` are attacked in chunks; a batch-coupling loss
        (``model``) then couples the samples of each chunk.
        """
        x, y = check_inputs(x, y)
        eps_list = self._eps_per_sample(eps, x)
        with self._attacking(model):
            return self._contained(x, self._chunked(model, x, y, eps_list), eps_list)

    def sweep(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              eps_values: Sequence[float]) -> list[torch.Tensor]:
        """One adversarial batch per ε of ``eps_values``, in order; equal to per-ε calls.

        Sets ``last_sweep_image_steps`` and ``last_sweep_queries``.
        """
        from robench.attacks.sweeps import sweep_with_strategy

        x, y = check_inputs(x, y)
        values = [self.norm.check_eps(e, x) for e in eps_values]
        grads, queries = self._grad_rows, self._query_rows
        try:
            with self._attacking(model):
                advs = sweep_with_strategy(self, model, x, y, values)
                return [self._contained(x, adv, [e] * len(x)) for adv, e in zip(advs, values)]
        finally:
            self.last_sweep_image_steps = self._grad_rows - grads
            self.last_sweep_queries = self._query_rows - queries

    # ---- the subclass hook ---------------------------------------------------------------
    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """Adversarial points for one chunk ``x`` (N, ...), ``y`` (N,), per-sample ``eps``."""
        raise NotImplementedError

    # ---- helpers for subclasses ----------------------------------------------------------
    def loss_and_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample loss (N,), its input gradient (N, ...) in x's dtype and the fp32 logits
        (N, K) at ``x``; ``loss`` (logits, y) → (N,) defaults to the attack's loss.

        The forward runs under the resolved precision's autocast; the loss is taken on
        ``logits.float()`` and summed in fp32.
        """
        precision = resolve_precision(self.precision, x.device)
        xg = x.detach().requires_grad_(True)  # (N, ...)
        with autocast(precision, x.device):
            logits = model(xg)  # (N, K), bf16 under autocast
        logits = logits.float()
        values = (self.loss if loss is None else loss)(logits, y).float()  # (N,)
        (grad,) = torch.autograd.grad(values.sum(), xg, allow_unused=True)
        self._grad_rows += len(x)
        grad = torch.zeros_like(x) if grad is None else grad
        return values.detach(), grad, logits.detach()

    def input_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∇ₓ Σᵢ L(xᵢ, yᵢ) (N, ...), with respect to the input only, in x's dtype."""
        return self.loss_and_grad(model, x, y)[1]

    @torch.no_grad()
    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's fp32 logits (N, K) at ``x`` (N, ...), without a gradient: a query."""
        precision = resolve_precision(self.precision, x.device)
        with autocast(precision, x.device):
            out = model(x)
        self._query_rows += len(x)
        return out.float()

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,) as the evaluation reads them: fp32, no autocast; a query.
        Whether a point is adversarial is always decided this way."""
        self._query_rows += len(x)
        return model(x).argmax(dim=1)

    def sample_noise(self, x: torch.Tensor, stream: int, shape: tuple[int, ...],
                     kind: str = "uniform") -> torch.Tensor:
        """Random numbers (N, *shape) on x's device: row i is drawn from its own generator,
        seeded by the attack's seed, ``stream`` and the bytes of sample ``x[i]``, so a
        sample gets the same numbers alone as in any batch. ``kind``: "uniform" in
        [0, 1) or "normal"."""
        pixels = x.detach().cpu().contiguous().view(len(x), -1).numpy()
        rows = []
        for row in pixels:
            digest = hashlib.blake2b(row.tobytes(), digest_size=8,
                                     key=f"{self.seed}:{stream}".encode()).digest()
            generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
            draw = torch.rand if kind == "uniform" else torch.randn
            rows.append(draw(shape, generator=generator, dtype=x.dtype))
        return torch.stack(rows).to(x.device)

    # ---- internals -----------------------------------------------------------------------
    def _eps_per_sample(self, eps: Eps, x: torch.Tensor) -> list[float]:
        """ε as ``len(x)`` checked floats: a number, a 0-dim tensor or a tensor (N,) (one sync)."""
        n = len(x)
        if isinstance(eps, torch.Tensor):
            if eps.ndim == 0:
                return [self.norm.check_eps(eps.item(), x)] * n
            if tuple(eps.shape) != (n,):
                raise UserError(f"per-sample eps must have shape ({n},), got {tuple(eps.shape)}")
            values = eps.detach().double().cpu().tolist()
            for v in set(values):
                self.norm.check_eps(v, x)
            return values
        return [self.norm.check_eps(eps, x)] * n

    @contextmanager
    def _attacking(self, model: nn.Module) -> Iterator[None]:
        with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            yield

    def _chunked(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        bs = self.batch_size
        parts = [self._perturb(model, x[i: i + bs], y[i: i + bs], eps[i: i + bs]) for i in range(0, len(x), bs)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _contained(self, x: torch.Tensor, adv: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """``adv`` (N, ...) projected onto each sample's ε-ball around ``x`` and into [0, 1]
        (a no-op for an attack that kept its iterates feasible)."""
        return self.norm.ball(x, eps).project(adv.detach())


class SampleStreams:
    """Random draws (N, *shape) for a chunk ``x0``, one stream per sample
    (:meth:`Attack.sample_noise`), numbered from ``stream``: what
    :meth:`robench.attacks.norms.Norm.random_start` draws a start from."""

    def __init__(self, attack: Attack, x0: torch.Tensor, stream: int) -> None:
        self.attack, self.x0, self.stream, self.draws = attack, x0, stream, 0

    def uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(shape, "uniform")

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self._draw(shape, "normal")

    def _draw(self, shape: tuple[int, ...], kind: str) -> torch.Tensor:
        self.draws += 1
        return self.attack.sample_noise(self.x0, self.stream * 16 + self.draws, shape, kind)


ATTACKS: Registry[Attack] = Registry("attack")


def create_attack(name: str, **options) -> Attack:
    """The attack registered as ``name`` with ``options`` (those left None take the
    attack's defaults); an option the attack does not take is a UserError naming it."""
    factory = ATTACKS.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    taken = getattr(factory, "OPTIONS", ())
    unknown = sorted(k for k in given if k not in taken and k not in COMMON_OPTIONS)
    if unknown:
        raise UserError(f"attack {name!r} takes no {', '.join(unknown)}; it takes: "
                        f"{', '.join(sorted(taken)) or 'no options of its own'}")
    return factory(**given)


#: Options every attack takes (``seed`` is ignored by deterministic ones).
COMMON_OPTIONS = ("loss", "model_loss", "batch_size", "precision", "seed")


def list_attacks(pattern: str = "*") -> list[str]:
    """Registered attack names matching ``pattern``."""
    return ATTACKS.names(pattern)
