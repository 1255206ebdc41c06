"""L∞ gradient-sign attacks (FGSM, IFGSM), their losses, ε-sweeps and peer backends.

>>> from robench.attacks import create_attack
>>> attack = create_attack("ifgsm", loss="ce")       # Kurakin's steps, α = 1/255
>>> x_adv = attack(model, x, y, eps=0.1)             # x: (B, C, H, W) in [0, 1]
>>> batches = attack.sweep(model, x, y, [0.0, 0.05, 0.1])
"""

from robench.attacks.base import (
    ATTACKS,
    DEFAULT_BATCH_SIZE,
    KURAKIN_STEP_SIZE,
    GradientSignAttack,
    check_eps,
    check_inputs,
    create_attack,
    eval_mode,
    kurakin_steps,
    list_attacks,
)
from robench.attacks.fgsm import FGSM
from robench.attacks.ifgsm import IFGSM
from robench.attacks.losses import ATTACK_LOSSES, AttackLoss, create_attack_loss, list_attack_losses
from robench.attacks.backends import BACKENDS, backend_names, craft

__all__ = [
    "ATTACKS",
    "ATTACK_LOSSES",
    "AttackLoss",
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "FGSM",
    "GradientSignAttack",
    "IFGSM",
    "KURAKIN_STEP_SIZE",
    "backend_names",
    "check_eps",
    "check_inputs",
    "craft",
    "create_attack",
    "create_attack_loss",
    "eval_mode",
    "kurakin_steps",
    "list_attack_losses",
    "list_attacks",
]
