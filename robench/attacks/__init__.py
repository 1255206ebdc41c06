"""Attacks on an engine shaped like foolbox's: the :class:`Attack` interface, the one
gradient loop (FGSM, IFGSM, FGM, PGD; L∞ and L2), APGD, Square, the worst case over an
ensemble, their losses, ε-sweep strategies and peer backends.

>>> from robench.attacks import create_attack
>>> attack = create_attack("ifgsm", loss="ce")       # Kurakin's steps, α = 1/255
>>> x_adv = attack(model, x, y, eps=0.1)             # x: (B, C, H, W) in [0, 1]
>>> batches = attack.sweep(model, x, y, [0.0, 0.05, 0.1])
"""

from robench.attacks.attack import ATTACKS, DEFAULT_BATCH_SIZE, Attack, Budget, create_attack, list_attacks
from robench.attacks.checks import check_eps, check_inputs, eval_mode
from robench.attacks.descent import GradientDescent
from robench.attacks.fgsm import FGSM
from robench.attacks.fgm import FGM
from robench.attacks.ifgsm import IFGSM, KURAKIN_STEP_SIZE, kurakin_steps
from robench.attacks.pgd import PGD, PGDL2
from robench.attacks.apgd import APGDCE, APGDCEL2, APGDDLR, APGDDLRL2, APGDT, APGDTL2
from robench.attacks.square import Square
from robench.attacks.losses import ATTACK_LOSSES, AttackLoss, create_attack_loss, list_attack_losses
from robench.attacks.norms import NORMS, get_norm
from robench.attacks.ensemble import ENSEMBLES, WorstCase
from robench.attacks.backends import BACKENDS, backend_names, craft

__all__ = [
    "APGDCE",
    "APGDCEL2",
    "APGDDLR",
    "APGDDLRL2",
    "APGDT",
    "APGDTL2",
    "ATTACKS",
    "ATTACK_LOSSES",
    "Attack",
    "AttackLoss",
    "BACKENDS",
    "Budget",
    "DEFAULT_BATCH_SIZE",
    "ENSEMBLES",
    "ENSEMBLES",
    "FGM",
    "FGSM",
    "GradientDescent",
    "IFGSM",
    "KURAKIN_STEP_SIZE",
    "NORMS",
    "WorstCase",
    "WorstCase",
    "PGD",
    "PGDL2",
    "Square",
    "backend_names",
    "check_eps",
    "check_inputs",
    "craft",
    "create_attack",
    "create_attack_loss",
    "eval_mode",
    "get_norm",
    "kurakin_steps",
    "list_attack_losses",
    "list_attacks",
]
