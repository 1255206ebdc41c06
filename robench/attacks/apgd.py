"""APGD, auto projected gradient descent (L∞ and L2), with the CE, DLR and targeted DLR losses.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, §3 and Algorithm 1 (the L2 variant as in their code
and in Croce & Hein, "Mind the box: l1-APGD ...", ICML 2021). From x⁰ drawn uniformly in
the ball, with P the projection onto B(x, ε) ∩ [0, 1] and d the norm's steepest-ascent
direction (sign for L∞, g/‖g‖₂ for L2):

    x¹   = P(x⁰ + η · d(∇f(x⁰)))
    zᵏ⁺¹ = P(xᵏ + η · d(∇f(xᵏ)))
    xᵏ⁺¹ = P(xᵏ + α (zᵏ⁺¹ − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹)),     α = 0.75 (momentum)

starting with η = 2ε. At the checkpoints w_j = ⌈p_j N⌉ (p₀ = 0, p₁ = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) a sample halves its η and continues from
its best point x_max if

    1. the loss increased in fewer than ρ · (w_j − w_{j−1}) of the steps since w_{j−1}
       (ρ = 0.75), or
    2. its η was not halved at w_{j−1} and f_max did not improve since w_{j−1}.

Every quantity is per sample (η, counters, best points, the random stream of its start),
so a sample's result does not depend on its batch-mates. A sample's output is the first
adversarial point found (x itself if x is already misclassified, then x⁰, x¹, ...), else
its highest-loss point. ``restarts`` runs attack only the samples not fooled yet, each
from a start drawn from another random stream; a sample keeps its first adversarial
point, else the highest-loss point over the runs.

Losses: ``apgd-ce`` ascends the cross entropy, ``apgd-dlr`` the DLR loss
(:mod:`robench.attacks.losses`), ``apgd-t`` the targeted DLR loss

    −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12)          (π: logits sorted descending)

against each of the ``targets`` classes the clean input finds most likely after y
(AutoAttack's APGD-T: 9 targets, at most K − 1), on the samples no earlier target fooled.

Implementation choices where paper and code differ (Croce & Hein's code, torchattacks and
ART were read to find them): the gradient at x_max is kept, so a restart at a checkpoint
costs no gradient; after it, the momentum term uses the iterate before the checkpoint and
the next "did the loss increase" comparison uses f_max (the loss of the point the sample
continues from); condition 2 applies at the first checkpoint too (w₀ = 0, where η was not
halved; ART does this, the authors' code skips it); condition 1 is the paper's strict <.
The last iterate's loss is a forward pass only (its gradient would never be used).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import torch
from torch import nn

from robench.attacks.attack import ATTACKS, DEFAULT_BATCH_SIZE, Attack, Budget, SampleStreams, check_count
from robench.attacks.losses import DLR_TOLERANCE, AttackLoss, check_dlr_classes
from robench.attacks.norms import Ball
from robench.bounds import MAX_RESTARTS, MAX_STEPS, MAX_TARGETS
from robench.errors import UserError

APGD_STEPS = 100
APGD_RESTARTS = 1
#: AutoAttack's APGD-T: the 9 most likely wrong classes (all of them on 10 classes).
APGD_TARGETS = 9
#: ρ of condition 1: a sample halves η if fewer than ρ of its steps since the last
#: checkpoint increased the loss.
RHO = 0.75
#: α of the momentum step xᵏ⁺¹ = P(xᵏ + α(zᵏ⁺¹ − xᵏ) + (1 − α)(xᵏ − xᵏ⁻¹)).
MOMENTUM = 0.75
#: η⁰ = 2ε.
STEP_FACTOR = 2.0

TargetedLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def checkpoints(steps: int) -> list[int]:
    """The checkpoints w₁ < w₂ < ... ≤ ``steps`` of Algorithm 1, w_j = ⌈p_j N⌉ with
    p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) while p_j ≤ 1
    (in hundredths, so 0.22 · 100 is 22, not 23; for N = 100: 22, 41, 57, 70, 80, 87, 93, 99)."""
    p = [0, 22]  # hundredths
    while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    return sorted({-(-q * steps // 100) for q in p[1:]})  # exact ⌈q·N/100⌉, repeats merged


def targeted_dlr(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR −(z_y − z_t)/(z_π1 − (z_π3 + z_π4)/2 + 1e-12) (Croce & Hein 2020, §4),
    per sample (B,) for logits (B, K), labels y (B,) and targets t (B,); K ≥ 4."""
    z = logits.float()  # (B, K)
    check_dlr_classes(z.shape[1], 4, "targeted DLR")
    top = z.topk(4, dim=1).values  # (B, 4)
    true = z.gather(1, labels[:, None]).squeeze(1)  # (B,)
    aimed = z.gather(1, target[:, None]).squeeze(1)  # (B,)
    return -(true - aimed) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_TOLERANCE)


def _most_likely_other(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Targeted DLR towards the most likely class other than y: the loss ``apgd-t`` names
    (each run fixes its own target; :func:`targeted_dlr`)."""
    z = logits.float()  # (B, K)
    other = z.scatter(1, labels[:, None], float("-inf")).argmax(dim=1)  # (B,)
    return targeted_dlr(z, labels, other)


@dataclass
class _Run:
    """The state of one APGD run for the n samples still moving (rows of the run: ``rows``)."""

    rows: torch.Tensor  # (n,) positions in the run's batch
    y: torch.Tensor  # (n,)
    target: torch.Tensor  # (n,) targets of APGD-T (y otherwise, unused)
    x0: torch.Tensor  # (n, ...) clean inputs, the ball's centres
    eps: torch.Tensor  # (n, 1, ...)
    lo: torch.Tensor | None  # (n, ...) L∞ bounds, None for L2
    hi: torch.Tensor | None
    eta: torch.Tensor  # (n, 1, ...) step sizes
    x: torch.Tensor  # (n, ...) xᵏ
    x_prev: torch.Tensor  # (n, ...) xᵏ⁻¹
    grad: torch.Tensor  # (n, ...) ∇f(xᵏ)
    f: torch.Tensor  # (n,) f(xᵏ)
    x_max: torch.Tensor  # (n, ...) the best point
    g_max: torch.Tensor  # (n, ...) ∇f(x_max)
    f_max: torch.Tensor  # (n,)
    f_max_last: torch.Tensor  # (n,) f_max at the last checkpoint
    reduced_last: torch.Tensor  # (n,) bool: η halved at the last checkpoint
    increases: torch.Tensor  # (n,) steps that increased f since the last checkpoint
    found: torch.Tensor  # (n,) bool: an adversarial point was found
    first_adv: torch.Tensor  # (n, ...) the first adversarial point (where found)

    def ball(self, norm) -> Ball:
        return Ball(norm, self.x0, self.eps, self.lo, self.hi)

    def select(self, keep: torch.Tensor) -> "_Run":
        """The state of the rows ``keep`` (k,)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return _Run(**{k: None if v is None else v.index_select(0, keep) for k, v in values.items()})


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample choice: row i of ``a`` where ``mask[i]`` (N,), else of ``b`` (N, ...)."""
    return torch.where(mask.view((-1,) + (1,) * (a.ndim - 1)), a, b)


class _APGD(Attack):
    """APGD (Algorithm 1 of Croce & Hein 2020) with restarts on the samples not yet fooled."""

    OPTIONS: tuple[str, ...] = ("steps", "restarts")
    deterministic = False
    targeted = False

    def __init__(
        self,
        loss: str | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.steps = check_count(APGD_STEPS if steps is None else steps, "steps", 1, MAX_STEPS)
        self.restarts = check_count(APGD_RESTARTS if restarts is None else restarts, "restarts", 1, MAX_RESTARTS)
        self.rho = RHO
        self.momentum = MOMENTUM
        self.targets: int | None = None
        super().__init__(loss=loss, model_loss=model_loss, batch_size=batch_size, precision=precision, seed=seed)

    def budget(self, eps: float) -> Budget:
        """``steps`` steps from η⁰ = 2ε, ``restarts`` runs (× ``targets`` for APGD-T)."""
        return Budget(steps=self.steps, step_size=STEP_FACTOR * eps, restarts=self.restarts * (self.targets or 1),
                      queries=None, seed=self.seed)

    def __repr__(self) -> str:
        targets = "" if self.targets is None else f"targets={self.targets}, "
        return (f"{type(self).__name__}(loss={self.loss.name!r}, norm={self.norm.name!r}, steps={self.steps}, "
                f"restarts={self.restarts}, {targets}batch_size={self.batch_size}, "
                f"precision={self.precision!r}, seed={self.seed})")

    # ---- runs ----------------------------------------------------------------------------
    def _runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        """(random stream, targets (N,) or None) of each run, in order; ``clean`` (N, K)."""
        return [(r, None) for r in range(self.restarts)]

    def _run_loss(self) -> TargetedLoss:
        """The loss f(logits, y, target) → (n,) a run ascends."""
        loss = self.loss
        return lambda logits, labels, target: loss(logits, labels)

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """Every run on the samples not fooled yet; a sample keeps its first adversarial
        point, else its highest-loss point over the runs. ``x`` (N, ...), ``y`` (N,)."""
        clean = self.logits(model, x)  # (N, K)
        runs = self._runs(clean, y)
        out = x.clone()  # (N, ...): x itself where x is misclassified already
        best_f = torch.full((len(x),), float("-inf"), device=x.device)  # (N,)
        alive = (clean.argmax(dim=1) == y).nonzero().squeeze(1)  # (n,) samples not fooled
        loss = self._run_loss()
        for stream, targets in runs:
            if len(alive) == 0:
                break
            keep = alive.tolist()
            target = y if targets is None else targets
            adv, fooled, f_max = self._run(model, x.index_select(0, alive), y.index_select(0, alive),
                                           target.index_select(0, alive), [eps[i] for i in keep], loss, stream)
            better = fooled | (f_max > best_f.index_select(0, alive))  # (n,)
            out.index_copy_(0, alive, _where(better, adv, out.index_select(0, alive)))
            best_f.index_copy_(0, alive, torch.where(better, f_max, best_f.index_select(0, alive)))
            alive = alive[~fooled]
        return out

    def _evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                  loss: TargetedLoss, grad: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(f (n,), ∇f (n, ...) or None, fp32 logits (n, K)) at ``x`` (n, ...)."""
        if grad:
            return self.loss_and_grad(model, x, y, lambda logits, labels: loss(logits, labels, target))
        logits = self.logits(model, x)  # (n, K)
        return loss(logits, y, target).float(), None, logits

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, eps: list[float],
             loss: TargetedLoss, stream: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run of Algorithm 1 on ``x`` (n, ...), ``y`` (n,) from a random start of
        stream ``stream``: (output (n, ...), fooled (n,) bool, f_max (n,)).

        Samples found adversarial leave the batch at the next checkpoint (their output
        is fixed), so nothing syncs between checkpoints.
        """
        n = len(x)
        ball = self.norm.ball(x, eps)
        start = self.norm.random_start(ball, SampleStreams(self, x, stream))  # (n, ...) x⁰
        f, grad, logits = self._evaluate(model, start, y, target, loss)
        found = logits.argmax(dim=1) != y  # (n,)
        s = _Run(
            rows=torch.arange(n, device=x.device), y=y, target=target, x0=x, eps=ball.eps, lo=ball.lo, hi=ball.hi,
            eta=STEP_FACTOR * ball.eps, x=start, x_prev=start, grad=grad, f=f, x_max=start, g_max=grad, f_max=f,
            f_max_last=f, reduced_last=torch.zeros_like(found), increases=torch.zeros_like(f),
            found=found, first_adv=start,
        )
        out = torch.empty_like(x)  # (n, ...)
        out_fooled = torch.zeros(n, dtype=torch.bool, device=x.device)  # (n,)
        out_f = torch.empty_like(f)  # (n,)

        def retire(s: _Run, done: torch.Tensor) -> None:
            """Write the outputs of the rows ``done`` (k,) of ``s``."""
            rows = s.rows.index_select(0, done)
            found = s.found.index_select(0, done)
            out.index_copy_(0, rows, _where(found, s.first_adv.index_select(0, done), s.x_max.index_select(0, done)))
            out_fooled.index_copy_(0, rows, found)
            out_f.index_copy_(0, rows, s.f_max.index_select(0, done))

        checks = checkpoints(self.steps)
        previous = dict(zip(checks, [0] + checks[:-1]))  # w_j → w_{j−1}
        alpha = self.momentum
        for k in range(self.steps):  # computes xᵏ⁺¹
            b = s.ball(self.norm)
            z = b.project(s.x + s.eta * self.norm.direction(s.grad))  # (n, ...)
            x_new = z if k == 0 else b.project(s.x + alpha * (z - s.x) + (1 - alpha) * (s.x - s.x_prev))
            last = k == self.steps - 1
            f, grad, logits = self._evaluate(model, x_new, s.y, s.target, loss, grad=not last)
            fooled = logits.argmax(dim=1) != s.y  # (n,)
            s.first_adv = _where(fooled & ~s.found, x_new, s.first_adv)
            s.found = s.found | fooled
            s.increases = s.increases + (f > s.f).to(s.increases.dtype)
            better = f > s.f_max  # (n,)
            s.x_max = _where(better, x_new, s.x_max)
            s.f_max = torch.where(better, f, s.f_max)
            s.x_prev, s.x, s.f = s.x, x_new, f
            if last:
                break
            s.g_max = _where(better, grad, s.g_max)
            s.grad = grad
            if k + 1 in previous:  # checkpoint w_j = k + 1
                window = k + 1 - previous[k + 1]
                halve = (s.increases < self.rho * window) | (~s.reduced_last & (s.f_max <= s.f_max_last))  # (n,)
                s.eta = _where(halve, s.eta / 2, s.eta)
                s.x = _where(halve, s.x_max, s.x)
                s.grad = _where(halve, s.g_max, s.grad)
                s.f = torch.where(halve, s.f_max, s.f)
                s.reduced_last, s.f_max_last = halve, s.f_max
                s.increases = torch.zeros_like(s.increases)
                if bool(s.found.any()):  # one sync per checkpoint
                    retire(s, s.found.nonzero().squeeze(1))
                    s = s.select((~s.found).nonzero().squeeze(1))
                    if len(s.rows) == 0:
                        break
        if len(s.rows):
            retire(s, torch.arange(len(s.rows), device=x.device))
        return out, out_fooled, out_f


class _APGDTargeted(_APGD):
    """APGD-T: APGD on the targeted DLR loss against each of the ``targets`` classes the
    clean input finds most likely after y, on the samples no earlier run fooled."""

    OPTIONS = ("steps", "restarts", "targets")
    targeted = True
    fixed_loss = "dlr-targeted"

    def __init__(
        self,
        loss: str | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        targets: int | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        if loss not in (None, self.fixed_loss):
            raise UserError(f"attack {self.name!r} ascends the {self.fixed_loss} loss and takes no other "
                            f"(got attack loss {loss!r})")
        # the base builds the attack loss from the registry, where the targeted DLR is not
        # (it needs a target per sample): let it build the default, then name ours
        self.fixed_loss = None
        try:
            super().__init__(steps=steps, restarts=restarts, model_loss=model_loss, batch_size=batch_size,
                             precision=precision, seed=seed)
        finally:
            del self.fixed_loss
        self.targets = check_count(APGD_TARGETS if targets is None else targets, "targets", 1, MAX_TARGETS)
        self.loss = AttackLoss("dlr-targeted", _most_likely_other)

    def _runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        """Targets ranked by the clean logits with y left out (rank 1: the most likely other
        class), at most K − 1 of them; per target, ``restarts`` runs."""
        n_classes = clean.shape[1]
        check_dlr_classes(n_classes, 4, "targeted DLR")
        ranked = clean.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)  # (N, K), y last
        runs = []
        for rank in range(min(self.targets, n_classes - 1)):
            for restart in range(self.restarts):
                runs.append((rank * self.restarts + restart, ranked[:, rank]))
        return runs

    def _run_loss(self) -> TargetedLoss:
        return targeted_dlr


class _Untargeted(_APGD):
    def _runs(self, clean: torch.Tensor, y: torch.Tensor) -> list[tuple[int, torch.Tensor | None]]:
        if self.loss.name == "dlr":
            check_dlr_classes(clean.shape[1])
        return super()._runs(clean, y)


@ATTACKS.register("apgd-ce")
class APGDCE(_Untargeted):
    """L∞ APGD on the cross entropy (AutoAttack's APGD-CE)."""

    name = "apgd-ce"
    fixed_loss = "ce"


@ATTACKS.register("apgd-dlr")
class APGDDLR(_Untargeted):
    """L∞ APGD on the DLR loss (AutoAttack's APGD-DLR); needs ≥ 3 classes."""

    name = "apgd-dlr"
    fixed_loss = "dlr"


@ATTACKS.register("apgd-t")
class APGDT(_APGDTargeted):
    """L∞ APGD-T on the targeted DLR loss (AutoAttack's APGD-T); needs ≥ 4 classes."""

    name = "apgd-t"


@ATTACKS.register("apgd-ce-l2")
class APGDCEL2(_Untargeted):
    """L2 APGD on the cross entropy."""

    name = "apgd-ce-l2"
    norm_name = "l2"
    fixed_loss = "ce"


@ATTACKS.register("apgd-dlr-l2")
class APGDDLRL2(_Untargeted):
    """L2 APGD on the DLR loss; needs ≥ 3 classes."""

    name = "apgd-dlr-l2"
    norm_name = "l2"
    fixed_loss = "dlr"


@ATTACKS.register("apgd-t-l2")
class APGDTL2(_APGDTargeted):
    """L2 APGD-T on the targeted DLR loss; needs ≥ 4 classes."""

    name = "apgd-t-l2"
    norm_name = "l2"
