"""Validity flags of attack results (DESIGN.md, "Correctness and safety").

Each flag is a check that a sound evaluation passes; a failure points at a weak attack,
gradient masking or a bug. docs/flags.md explains each one and what to do about it.

- ``monotone_in_eps``: accuracy does not increase with ε (same attacker, defender, attack).
- ``eps0_is_clean``: accuracy at ε = 0 equals clean accuracy.
- ``ifgsm_not_above_fgsm``: white-box IFGSM accuracy ≤ white-box FGSM accuracy.
- ``whitebox_not_above_transfer``: a defender's white-box accuracy ≤ its accuracy
  under every transfer attack at the same ε.
- ``large_eps_to_chance``: white-box IFGSM at ε = 1 (covers the pixel range) drives
  accuracy to chance (1/K) or below, within three binomial standard errors.

The gradient-masking flags (:mod:`robench.evaluate.masking`, :data:`MASKING_FLAGS`;
Athalye et al. 2018, Carlini et al. 2019, Croce & Hein 2020) follow:

- ``gradient_free_not_stronger``: white-box Square is not more than 1 point below the
  best white-box gradient attack of its cell.
- ``converged``: twice the steps or restarts lower a white-box run's accuracy by at most
  1 point.
- ``ce_dlr_gap``: white-box APGD-CE and APGD-DLR lie within 5 points of each other.
- ``gradient_saturation``: at most 1 % of the test points have an exactly zero input
  gradient of the attack loss; computed on the models, not from records
  (:func:`robench.evaluate.masking.saturation_flag`), so :func:`compute_flags` does not
  make it.

Records are compared only with records of the same attack loss, backend, sample count,
precision, step schedule and coupled batch (bf16 and fp32 runs of a cell, a run with
``--steps`` / ``--step-size`` beside a default one, and ``model``-loss runs on different
chunks are judged apart); callers pass one record per cell
(:func:`robench.evaluate.current.current_attack_records`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Sequence

from robench.evaluate.masking import MASKING_FLAGS, masking_flags
from robench.evaluate.schedule import DEFAULT_SCHEDULE
from robench.store import SANITY, AttackRecord, FlagRecord

FLAGS = ("monotone_in_eps", "eps0_is_clean", "ifgsm_not_above_fgsm",
         "whitebox_not_above_transfer", "large_eps_to_chance", *MASKING_FLAGS)


def _flag(name: str, passed: bool, scope: str, detail: str, *members: str) -> dict[str, Any]:
    """A checked flag; ``members``: the attacker and defender whose numbers it judges."""
    return {"flag": name, "passed": passed, "scope": scope, "detail": detail, "members": frozenset(members)}


def _monotone(rows) -> list[dict]:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["attacker"], r["defender"], r["attack"], r["attack_loss"], r["backend"], r["n"],
                r["precision"], r["schedule"], r["coupled_batch"])].append(r)
    flags = []
    for (att, dfd, attack, loss, backend, _, precision, schedule, batch), group in sorted(groups.items()):
        group.sort(key=lambda r: r["eps"])
        rises = [(a, b) for a, b in zip(group, group[1:]) if b["correct"] > a["correct"]]
        detail = "; ".join(f"eps {a['eps']:.4g}: {a['accuracy']:.4f} -> eps {b['eps']:.4g}: {b['accuracy']:.4f}"
                           for a, b in rises) or f"{len(group)} eps values"
        flags.append(_flag("monotone_in_eps", not rises,
                           f"{attack}/{loss}/{backend}{_tag(precision, schedule, batch)} {att} -> {dfd}", detail,
                           att, dfd))
    return flags


def _eps0(rows) -> list[dict]:
    return [
        _flag("eps0_is_clean", r["correct"] == r["clean_correct"],
              f"{r['attack']}/{r['attack_loss']}/{r['backend']}{_tags(r)} {r['attacker']} -> {r['defender']}",
              f"eps 0 accuracy {r['accuracy']:.4f}, clean {r['clean_accuracy']:.4f}", r["attacker"], r["defender"])
        for r in rows if r["eps"] == 0
    ]


def _cell(r: dict[str, Any], attack: str, schedule: str) -> tuple:
    """What a white-box row is compared on: defender, ``attack``, loss, backend, ε, n,
    precision, ``schedule`` and coupled batch."""
    return (r["defender"], attack, r["attack_loss"], r["backend"], r["eps"], r["n"], r["precision"], schedule,
            r["coupled_batch"])


def _tag(precision: str, schedule: str = DEFAULT_SCHEDULE, batch: int | None = None) -> str:
    """`` bf16``, `` (steps 20, step default)`` and `` (batch 256)`` in a flag's scope;
    nothing for fp32 (the CPU's and the peers' precision), the default schedule and an
    attack loss that couples no samples."""
    text = "" if precision == "fp32" else f" {precision}"
    text += "" if schedule == DEFAULT_SCHEDULE else f" ({schedule})"
    return text + (f" (batch {batch})" if batch is not None else "")


def _tags(r: dict[str, Any]) -> str:
    return _tag(r["precision"], r["schedule"], r["coupled_batch"])


def _reaches_eps(row: dict[str, Any]) -> bool:
    """Whether the row's steps × step size can reach its ε. Kurakin's default always
    can; ``--steps 3`` of 1/255 at ε = 0.1 cannot."""
    return row["steps"] * row["step_size"] >= row["eps"] * (1 - 1e-9)


def _ifgsm_vs_fgsm(whitebox) -> list[dict]:
    """Each IFGSM row (any schedule whose steps can reach ε: one that cannot is weaker
    than FGSM by its budget, not by masking) against the default FGSM row of its cell."""
    index = {_cell(r, r["attack"], r["schedule"]): r for r in whitebox}
    flags = []
    for key, it in sorted(index.items()):
        dfd, attack, loss, backend, eps, _, precision, schedule, batch = key
        fg = index.get(_cell(it, "fgsm", DEFAULT_SCHEDULE))
        if attack != "ifgsm" or fg is None or eps == 0 or not _reaches_eps(it):
            continue
        flags.append(_flag("ifgsm_not_above_fgsm", it["correct"] <= fg["correct"],
                           f"{loss}/{backend}{_tag(precision, schedule, batch)} {dfd} eps {eps:.4g}",
                           f"ifgsm {it['accuracy']:.4f}, fgsm {fg['accuracy']:.4f}", dfd))
    return flags


def _whitebox_vs_transfer(whitebox, transfer) -> list[dict]:
    """Each transfer row against the white-box row of the same cell and schedule."""
    index = {_cell(r, r["attack"], r["schedule"]): r for r in whitebox}
    flags = []
    for t in transfer:
        wb = index.get(_cell(t, t["attack"], t["schedule"]))
        if wb is None or t["eps"] == 0:
            continue
        flags.append(_flag("whitebox_not_above_transfer", wb["correct"] <= t["correct"],
                           f"{t['attack']}/{t['attack_loss']}/{t['backend']}{_tags(t)} "
                           f"{t['attacker']} -> {t['defender']} eps {t['eps']:.4g}",
                           f"white-box {wb['accuracy']:.4f}, transfer {t['accuracy']:.4f}", t["attacker"],
                           t["defender"]))
    return flags


def chance_bound(num_classes: int, n: int) -> float:
    """Chance accuracy 1/K plus three binomial standard errors on ``n`` samples."""
    p = 1.0 / num_classes
    return p + 3.0 * math.sqrt(p * (1 - p) / n)


def _chance(sanity) -> list[dict]:
    return [
        _flag("large_eps_to_chance", r["accuracy"] <= chance_bound(r["num_classes"], r["n"]),
              f"{r['attack']}/{r['attack_loss']}/{r['backend']}{_tags(r)} {r['defender']} eps {r['eps']:.4g}",
              f"accuracy {r['accuracy']:.4f}, chance bound {chance_bound(r['num_classes'], r['n']):.4f}",
              r["defender"])
        for r in sanity
    ]


def compute_flags(records: Iterable[AttackRecord]) -> list[dict[str, Any]]:
    """Every validity flag of a set of attack records (flag, passed, scope, detail and
    the members whose numbers it judges), failures first."""
    rows = [r.as_dict() for r in records]
    sweep = [r for r in rows if r["mode"] != SANITY]
    whitebox = [r for r in sweep if r["mode"] == "whitebox"]
    transfer = [r for r in sweep if r["mode"] == "blackbox"]
    flags = (_monotone(sweep) + _eps0(sweep) + _ifgsm_vs_fgsm(whitebox)
             + _whitebox_vs_transfer(whitebox, transfer)
             + _chance([r for r in rows if r["mode"] == SANITY]) + masking_flags(whitebox))
    return sorted(flags, key=lambda f: (f["passed"], FLAGS.index(f["flag"])))


def summarize_flags(flags: Sequence[FlagRecord]) -> str:
    """One line per flag kind (passed / checked), then each failure."""
    lines = []
    for name in FLAGS:
        mine = [f for f in flags if f.flag == name]
        if mine:
            passed = sum(f.passed for f in mine)
            lines.append(f"{name:<28} {passed}/{len(mine)} passed")
    failures = [f for f in flags if not f.passed]
    lines += [f"FAILED {f.flag}: {f.scope}: {f.detail}" for f in failures]
    return "\n".join(lines) if lines else "no validity flags: no attack results yet"
