"""The upper bound of every count robench takes, each far above any real protocol.

A count past its bound is a slip (``--steps 10**12``, ten thousand ε values, a list pasted
twice over): it is refused before any work starts, with one line naming the bound, instead
of running for days or building a list of that length first. The command line states each
bound in its option's help; docs/reliability.md ("Bounds") lists them with these reasons.
The attacks check their own options against the same bounds, so the Python API refuses
them too. No module here imports torch: the command line reads them before anything heavy.
"""

from __future__ import annotations

#: Attack steps (IFGSM, PGD, APGD, the worst-case ensembles): 100 × AutoAttack's 100 APGD
#: steps; Kurakin's rule gives at most 259.
MAX_STEPS = 10_000
#: Restarts of PGD, APGD and Square: 20 × the 5 of AutoAttack's "plus" version.
MAX_RESTARTS = 100
#: Square's query budget: 20 × AutoAttack's 5,000.
MAX_QUERIES = 100_000
#: APGD-T's target classes: K − 1 for the most classes any dataset here has (ImageNet32's
#: 1,000); checked against the dataset's own K − 1 once it loads.
MAX_TARGETS = 999
#: ε values of one sweep: the shipped grids have 7 and 9.
MAX_EPS_VALUES = 100
#: Attacked test images: the largest test set (ImageNet32's 50,000 validation images);
#: checked against the dataset's own test set once it loads.
MAX_SAMPLES = 50_000
#: Test images attacked together: twice the largest test set (a chunk that large is the
#: whole test set).
MAX_BATCH_SIZE = 100_000
#: A seed (``--seeds``, ``--attack-seed``): 32 bits, the range NumPy's seeds and the zoo
#: definitions' seeds have.
MAX_SEED = 2**32 - 1
#: Seeds in one ``--seeds`` list: 200 × the 5 a shipped zoo definition trains.
MAX_SEEDS = 1_000
#: Names in one comma-separated list (``--members``, ``--defenders``, ``--attacks``): over
#: 20 × the 43 members of the largest shipped zoo (8 configurations × 5 seeds, 3 attackers).
MAX_NAMES = 1_000


def above_bound(option: str, shown: str, bound: int, unit: str = "") -> str:
    """The one-line message for a value past its ``bound``: ``option`` names it (empty where
    argparse names it already), ``shown`` is the value as given (or, with ``unit`` such as
    "values", the length of its list)."""
    subject = f"{option} " if option else ""
    given = f"{shown} {unit} is above the bound of {bound:,} {unit}" if unit else \
        f"{shown} is above the bound {bound:,}"
    return f"{subject}{given}; give at most {bound:,} (each bound and its reason: docs/reliability.md)"


def shown_count(value: int) -> str:
    """``value`` for a message: its digits, or its size when they would fill the line (an
    integer of thousands of digits cannot even be printed by default)."""
    return str(value) if value.bit_length() <= 600 else f"an integer of {value.bit_length():,} bits"
