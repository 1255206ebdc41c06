"""The worst case over an ensemble of attacks, per sample (Croce & Hein 2020, AutoAttack).

A sample counts as robust at ε only if every attack of the ensemble fails on it. As in
AutoAttack, the attacks run in order and each one attacks only the points that are still
robust (correctly classified at the clean input and by every earlier attack's output);
a point an attack breaks keeps that adversarial. Across an ε-sweep the balls are nested,
so a point broken at ε is broken at every larger ε (its adversarial lies in the larger
ball): the sweep attacks the ε values in increasing order, each only on the survivors of
the smaller ones (:func:`robench.attacks.sweeps.sweep_with_strategy`, strategy "nested").
Robust accuracy under the ensemble is therefore monotone in ε by construction.

Named ensembles; each member takes the ensemble options listed with it, and where the
user gives none, the ensemble's own budget:

* ``worst`` (L∞): FGSM and IFGSM (the paper's attacks, Kurakin's schedule), then PGD with
  CE, APGD-CE, APGD-DLR and APGD-T (3 target classes) with 50 steps each, and Square with
  500 queries. The budget is chosen so the quick digits run stays quick; the
  ``converged`` masking flag (docs/flags.md) checks that doubling the steps does not
  lower the accuracy, ``robench run``'s gradient-free check runs it again with Square at
  AutoAttack's :data:`FULL_SQUARE_QUERIES`, and ``--steps`` / ``--targets`` /
  ``--queries`` raise it;
* ``aa`` (L∞): AutoAttack's standard version without FAB-T and its budgets: APGD-CE
  (100 steps), APGD-T (9 target classes, 100 steps) and Square (5,000 queries);
* ``worst-l2``: FGM, then L2 PGD, APGD-CE, APGD-DLR and APGD-T (3 targets) with 50 steps.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from robench.attacks.attack import ATTACKS, DEFAULT_BATCH_SIZE, Attack, Budget, create_attack
from robench.errors import UserError

GRADIENT_BUDGET = ("steps", "restarts")
TARGETED_BUDGET = GRADIENT_BUDGET + ("targets",)
QUERY_BUDGET = ("queries", "restarts")
QUICK_STEPS = 50  # of each strong member of ``worst`` and ``worst-l2``
QUICK = {"steps": QUICK_STEPS}
FULL_SQUARE_QUERIES = 5000  # AutoAttack's Square budget (Croce & Hein 2020)
#: ensemble → (member attack, the ensemble options it takes, its budget where none is
#: given), in the order they run.
ENSEMBLES: dict[str, tuple[tuple[str, tuple[str, ...], dict], ...]] = {
    "worst": (("fgsm", (), {}), ("ifgsm", (), {}), ("pgd", GRADIENT_BUDGET, QUICK),
              ("apgd-ce", GRADIENT_BUDGET, QUICK), ("apgd-dlr", GRADIENT_BUDGET, QUICK),
              ("apgd-t", TARGETED_BUDGET, {**QUICK, "targets": 3}), ("square", QUERY_BUDGET, {"queries": 500})),
    "aa": (("apgd-ce", GRADIENT_BUDGET, {"steps": 100}), ("apgd-t", TARGETED_BUDGET, {"steps": 100, "targets": 9}),
           ("square", QUERY_BUDGET, {"queries": FULL_SQUARE_QUERIES})),
    "worst-l2": (("fgm", (), {}), ("pgd-l2", GRADIENT_BUDGET, QUICK), ("apgd-ce-l2", GRADIENT_BUDGET, QUICK),
                 ("apgd-dlr-l2", GRADIENT_BUDGET, QUICK), ("apgd-t-l2", TARGETED_BUDGET, {**QUICK, "targets": 3})),
}


class WorstCase(Attack):
    """Per-sample worst case over the member attacks of one named ensemble."""

    OPTIONS = ("steps", "restarts", "queries", "targets")
    deterministic = False
    nested_eps = True
    members_spec: tuple[tuple[str, tuple[str, ...], dict], ...] = ()

    def __init__(
        self,
        loss: str | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        queries: int | None = None,
        targets: int | None = None,
        model_loss: Callable | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        precision: str = "auto",
        seed: int | None = None,
    ) -> None:
        options = {"steps": steps, "restarts": restarts, "queries": queries, "targets": targets}
        takers = {k for _, taken, _ in self.members_spec for k in taken}
        unused = sorted(k for k, v in options.items() if v is not None and k not in takers)
        if unused:
            raise UserError(f"ensemble {self.name!r} has no member that takes {', '.join(unused)}")
        common = {"model_loss": model_loss, "batch_size": batch_size, "precision": precision, "seed": seed}
        self.members: list[Attack] = []
        for name, taken, budget in self.members_spec:
            own = {**budget, **{k: options[k] for k in taken if options[k] is not None}}
            member_loss = loss if ATTACKS.get(name).fixed_loss is None else None
            self.members.append(create_attack(name, loss=member_loss, **own, **common))
        norms = {m.norm_name for m in self.members}
        assert len(norms) == 1, f"ensemble {self.name} mixes norms {norms}"
        self.norm_name = norms.pop()
        self.options = {k: v for k, v in options.items() if v is not None}
        #: (ε, member index) → points robust after that member, over the calls since reset.
        self.robust_after: dict[tuple[float, int], int] = {}
        super().__init__(loss=loss, model_loss=model_loss, batch_size=batch_size, precision=precision, seed=seed)

    def budget(self, eps: float) -> Budget:
        """What the ensemble's own options set: steps and restarts of the members that
        take them (PGD, APGD), step size 0 (the members' differ), the gradient-free
        members' query budget. Doubling ``steps`` doubles every strong member's steps,
        which the ``converged`` masking flag compares."""
        strong = [(m, m.budget(eps)) for m, (_, taken, _) in zip(self.members, self.members_spec)
                  if "steps" in taken]
        free = [m.budget(eps) for m, (_, taken, _) in zip(self.members, self.members_spec) if "queries" in taken]
        steps = max((b.steps for _, b in strong), default=0)
        restarts = max((m.restarts for m, _ in strong), default=1)  # APGD-T's budget counts targets too
        return Budget(steps, 0.0, restarts, sum(b.queries for b in free) or None, self.seed)

    def stage_names(self) -> list[str]:
        """``<ensemble>@<member>`` of every member but the last: the cumulative worst
        case after that member (the last one's is the ensemble's own)."""
        return [f"{self.name}@{m.name}" for m in self.members[:-1]]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, members={[m.name for m in self.members]}, "
                f"options={self.options}, seed={self.seed})")

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: list[float]) -> torch.Tensor:
        """Each member on the points still robust; a point keeps the first adversarial found.
        Adds, per ε, how many of these points are robust after each member to
        ``robust_after`` (the sweep's per-member breakdown). At ε = 0 no member runs: the
        only point in the ball is x, robust exactly when it is classified correctly."""
        adv = x.clone()  # (N, ...)
        alive = torch.nonzero(self.predict(model, x) == y).flatten()  # robust so far
        eps_of = torch.tensor(eps, dtype=torch.float64)
        at_zero = eps_of[alive.cpu()] == 0
        pinned = alive[at_zero.to(alive.device)]  # ε = 0: the ball is x itself, no member can move it
        alive = alive[~at_zero.to(alive.device)]
        for k, member in enumerate(self.members):
            self._count_robust(k, eps_of[pinned.cpu()])
            if len(alive):
                keep = alive.tolist()
                grads, queries = member._grad_rows, member._query_rows
                sub_eps = [eps[i] for i in keep]
                found = member._contained(x[alive], member._chunked(model, x[alive], y[alive], sub_eps), sub_eps)
                self._grad_rows += member._grad_rows - grads
                self._query_rows += member._query_rows - queries
                adv.index_copy_(0, alive, found)
                alive = alive[self.predict(model, found) == y[alive]]
            self._count_robust(k, eps_of[alive.cpu()])
        return adv

    def _count_robust(self, member: int, eps_of_robust: torch.Tensor) -> None:
        for value, count in zip(*torch.unique(eps_of_robust, return_counts=True)):
            key = (float(value), member)
            self.robust_after[key] = self.robust_after.get(key, 0) + int(count)


def _ensemble(name: str) -> type[WorstCase]:
    taken = tuple(dict.fromkeys(k for _, options, _ in ENSEMBLES[name] for k in options))
    cls = type(f"WorstCase_{name.replace('-', '_')}", (WorstCase,),
               {"name": name, "members_spec": ENSEMBLES[name], "OPTIONS": taken})
    cls.__doc__ = f"The per-sample worst case over {', '.join(m for m, _, _ in ENSEMBLES[name])}."
    return cls


for _name in ENSEMBLES:
    ATTACKS.register(_name)(_ensemble(_name))
