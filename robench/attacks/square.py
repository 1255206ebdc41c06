"""Square, the L∞ score-based black-box attack by random search.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020 (Algorithm 1 and the L∞ sampling
distribution of §3.1). Only the model's logits are queried (never a gradient); the loss
is the margin

    L(x) = z_y(x) − max_{k≠y} z_k(x)       (the attack loss ``margin``; < 0: fooled)

and is minimised by random search over the vertices of the ε-box:

* start: vertical stripes, x⁰ = clip₀¹(x + ε · ρ) with one ρ ∈ {−1, 1} per column and
  channel (one query);
* iteration i, on the samples not fooled yet: a square of side
  s = max(1, round(√(p_i · h · w))) at a uniformly random position, whose pixels are set to
  x ± ε (one sign per channel), clipped to [0, 1]; the candidate replaces the current point
  if it lowers the margin (one query). Following the authors' code, the signs are redrawn
  (uniformly among the other sign patterns) when they would leave the point unchanged, so
  no query is spent on the current point again;
* the square's top-left corner is uniform over all h − s + 1 rows and w − s + 1 columns
  (the paper's {0, …, w − h}; the authors' code, torchattacks and ART draw it from one
  fewer, so with s = 1 they never change the last row or column after the start; on 8×8
  digits that is 15 of the 64 pixels, and this attack is markedly stronger there);
* the fraction p_i of pixels changed starts at ``p_init`` (0.8) and is halved at
  iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of a 10 000-query budget,
  rescaled to the actual budget (iteration i counts as i · 10 000 / ``queries``), as in
  the authors' code.

``queries`` (default 5000, as in AutoAttack) bounds the model evaluations per sample and
restart, the clean query that finds the samples already misclassified included (those are
returned unchanged). ``restarts`` > 1 runs the attack again, with new random numbers, on
the samples no earlier run has fooled; a sample keeps its lowest-margin point.

Each sample's random numbers come from its own streams (:meth:`Attack.sample_noise`):
its stripes, and per iteration its square's position, its signs and the redraw, drawn in
tables of ``_BLOCK`` iterations; so a sample gets the same result alone as in any batch.

L∞ only: the paper's L2 variant (its "centred squares" distribution) is not implemented,
and no ``square-l2`` attack is registered.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable

import torch
from torch import nn

from robench.attacks.attack import ATTACKS, DEFAULT_BATCH_SIZE, Attack, Budget, check_count, check_positive
from robench.bounds import MAX_QUERIES, MAX_RESTARTS
from robench.errors import UserError

SQUARE_QUERIES = 5000  # AutoAttack's budget
SQUARE_P_INIT = 0.8
#: Iterations (of 10 000) after which p is halved (the authors' schedule).
P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_SCHEDULE_BUDGET = 10_000
_BLOCK = 256  # iterations of random numbers drawn per sample_noise call
_RESTART_STREAMS = 1 << 24  # stream ids of one restart: stripes, then one per block
_REDRAW_BITS = 24  # channels whose sign a redraw can flip (all of them up to 24 channels)


def p_schedule(p_init: float, iteration: int, queries: int) -> float:
    """The fraction of pixels changed at ``iteration`` (0-based) of a ``queries`` budget:
    ``p_init`` halved once per threshold of :data:`P_HALVINGS` that ``iteration`` · 10 000 /
    ``queries`` (rounded down) exceeds."""
    scaled = iteration * _SCHEDULE_BUDGET // queries
    return p_init / 2 ** bisect.bisect_left(P_HALVINGS, scaled)


def square_side(p: float, h: int, w: int) -> int:
    """The side s = max(1, round(√(p · h · w))) of a square covering a fraction p of the
    h × w pixels (at most min(h, w))."""
    return min(max(1, int(round(math.sqrt(p * h * w)))), h, w)


@ATTACKS.register("square")
class Square(Attack):
    """L∞ Square attack (Andriushchenko et al., ECCV 2020): gradient-free random search of
    the margin z_y − max_{k≠y} z_k over squares of ±ε; see the module docstring.

    ``queries``: model evaluations per sample and restart (default 5000); ``p_init``: the
    initial fraction of pixels a square covers, in (0, 1] (default 0.8); ``restarts``: runs
    on the samples not fooled yet (default 1). L∞ only.
    """

    name = "square"
    norm_name = "linf"
    deterministic = False
    fixed_loss = "margin"
    OPTIONS = ("queries", "p_init", "restarts")

    def __init__(
        self,
        loss: str | None = None,
        queries: int = SQUARE_QUERIES,
        p_init: float = SQUARE_P_INIT,
        restarts: int = 1,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.queries = check_count(queries, "queries", 1, MAX_QUERIES)
        self.p_init = check_positive(p_init, "p_init")
        if self.p_init > 1:
            raise UserError(f"p_init must be a fraction of the pixels in (0, 1], got {p_init!r}")
        self.restarts = check_count(restarts, "restarts", 1, MAX_RESTARTS)
        super().__init__(loss=loss, model_loss=model_loss, batch_size=batch_size, precision=precision, seed=seed)

    def budget(self, eps: float) -> Budget:
        return Budget(steps=self.queries, step_size=self.p_init, restarts=self.restarts,
                      queries=self.queries, seed=self.seed)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(queries={self.queries}, p_init={self.p_init}, restarts={self.restarts}, "
                f"norm={self.norm.name!r}, batch_size={self.batch_size}, precision={self.precision!r}, "
                f"seed={self.seed})")

    # ---- the attack ----------------------------------------------------------------------
    def _margin(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The margin z_y − max_{k≠y} z_k (N,) at ``x`` (N, ...): one query per row."""
        return self.loss(self.logits(model, x), y)

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """Every restart on the samples not fooled yet; ε = 0 and misclassified samples stay x."""
        if x.ndim != 4:
            raise UserError(f"the square attack needs images (N, C, H, W), got shape {tuple(x.shape)}")
        out = x.clone()  # (N, C, H, W)
        attacked = [i for i, e in enumerate(eps) if e > 0]
        if not attacked:
            return out
        idx = torch.tensor(attacked, device=x.device)  # (M,)
        x0, y0 = x.index_select(0, idx), y.index_select(0, idx)  # (M, C, H, W), (M,)
        e0 = [eps[i] for i in attacked]
        margin = self._margin(model, x0, y0)  # (M,): the clean query
        best = x0.clone()  # (M, C, H, W)
        todo = (~(margin < 0)).nonzero().flatten()  # rows of x0 not fooled (NaN: not fooled)
        for restart in range(self.restarts):
            left = self.queries - (1 if restart == 0 else 0)  # the clean query counts in the first
            if len(todo) == 0 or left < 1:
                break
            keep = todo.tolist()
            adv, m = self._run(model, x0.index_select(0, todo), y0.index_select(0, todo),
                               [e0[i] for i in keep], restart, left - 1)  # (k, C, H, W), (k,)
            improved = m < margin.index_select(0, todo)  # (k,)
            best.index_copy_(0, todo, torch.where(improved[:, None, None, None], adv, best.index_select(0, todo)))
            margin.index_copy_(0, todo, torch.where(improved, m, margin.index_select(0, todo)))
            todo = todo[~(margin.index_select(0, todo) < 0)]
        out.index_copy_(0, idx, best)
        return out

    def _run(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor, eps: list[float], restart: int,
             iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of Algorithm 1 on ``x0`` (M, C, H, W): the stripes start (one query) and
        up to ``iterations`` square updates (one query each) on the samples not fooled yet.
        Returns the final points (M, C, H, W) and their margins (M,)."""
        m, c, h, w = x0.shape
        ball = self.norm.ball(x0, eps)
        lo, hi = ball.lo, ball.hi  # (M, C, H, W): clip₀¹(x0 − ε), clip₀¹(x0 + ε)
        base = restart * _RESTART_STREAMS
        stripes = self.sample_noise(x0, base, (c, 1, w)) < 0.5  # (M, C, 1, W): +ε where True
        x_best = torch.where(stripes, hi, lo)  # (M, C, H, W)
        margin = self._margin(model, x_best, y)  # (M,)
        alive = (~(margin < 0)).nonzero().flatten()  # (k,) rows not fooled
        rows = torch.arange(h, device=x0.device)  # (H,)
        cols = torch.arange(w, device=x0.device)  # (W,)
        slot = torch.full((m,), -1, dtype=torch.long, device=x0.device)  # row of each sample in the table
        table = x0.new_empty(0)
        for i in range(iterations):
            if len(alive) == 0:
                break
            offset = i % _BLOCK
            if offset == 0:  # the next block of each live sample's own stream
                table = self.sample_noise(x0.index_select(0, alive), base + 1 + i // _BLOCK,
                                          (_BLOCK, c + 3))  # (k, BLOCK, C + 3)
                slot[alive] = torch.arange(len(alive), device=x0.device)
            u = table[slot.index_select(0, alive), offset].double()  # (k, C + 3)
            s = square_side(p_schedule(self.p_init, i, self.queries), h, w)
            top = (u[:, 0] * (h - s + 1)).long().clamp_max(h - s)  # (k,) in {0, …, h − s}
            left = (u[:, 1] * (w - s + 1)).long().clamp_max(w - s)  # (k,)
            in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)  # (k, H)
            in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)  # (k, W)
            window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (k, 1, H, W)
            up = (u[:, 2: 2 + c] < 0.5)[:, :, None, None]  # (k, C, 1, 1): +ε where True
            cur = x_best.index_select(0, alive)  # (k, C, H, W)
            lo_k, hi_k = lo.index_select(0, alive), hi.index_select(0, alive)
            cand = torch.where(window, torch.where(up, hi_k, lo_k), cur)  # (k, C, H, W)
            # signs that change nothing (the square already has them): redraw among the others
            same = (cand == cur).flatten(1).all(dim=1)  # (k,)
            flip = _nonzero_bits(u[:, c + 2], c)[:, :, None, None]  # (k, C, 1, 1)
            redrawn = torch.where(window, torch.where(up ^ flip, hi_k, lo_k), cur)  # (k, C, H, W)
            cand = torch.where(same[:, None, None, None], redrawn, cand)
            new = self._margin(model, cand, y.index_select(0, alive))  # (k,)
            old = margin.index_select(0, alive)  # (k,)
            better = (new < old) & ~(cand == cur).flatten(1).all(dim=1)  # (k,)
            x_best.index_copy_(0, alive, torch.where(better[:, None, None, None], cand, cur))
            now = torch.where(better, new, old)  # (k,)
            margin.index_copy_(0, alive, now)
            alive = alive[~(now < 0)]
        return x_best, margin


def _nonzero_bits(u: torch.Tensor, channels: int) -> torch.Tensor:
    """Per row of ``u`` (k,) in [0, 1), a uniformly random non-zero bit pattern (k, channels)
    (over the first 24 channels; the others get 0)."""
    bits = min(channels, _REDRAW_BITS)
    patterns = 2 ** bits - 1
    k = (1 + (u * patterns).long()).clamp_max(patterns)  # (k,) in {1, …, 2^bits − 1}
    shifts = torch.arange(bits, device=u.device)  # (bits,)
    flip = ((k[:, None] >> shifts) & 1).bool()  # (k, bits)
    if bits < channels:
        flip = torch.cat([flip, flip.new_zeros(len(u), channels - bits)], dim=1)
    return flip
