"""Every count and list robench takes has a stated upper bound (robench/bounds.py,
docs/reliability.md "Bounds"): the command line states it in the option's help, and the
attacks refuse a value past it through the Python API too, before any work.

The command line's own refusals (exit 2, one line, nothing written) are cases of
tests/test_bad_input.py.
"""

from __future__ import annotations

import argparse

import pytest

from robench import bounds
from robench.attacks import create_attack
from robench.cli import build_parser
from robench.errors import UserError

#: Options that take a count or a list without an integer type: ε values (parsed by
#: robench.evaluate.attack_runner.parse_eps, which counts them first).
COUNTED_LATER = {("attack", "--eps")}


def _options(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, command + (name,))
        else:
            yield " ".join(command), action


def _is_count(action: argparse.Action) -> bool:
    """An option whose value is an integer or a comma-separated list (its type says so)."""
    name = getattr(action.type, "__qualname__", "")
    return name.startswith("_int_at_least") or name in ("_names", "_seed_list")


def test_every_count_and_list_option_states_its_bound_in_its_help():
    counted = [(cmd, action) for cmd, action in _options(build_parser())
               if _is_count(action) or (cmd, action.option_strings[-1] if action.option_strings else "")
               in COUNTED_LATER]
    assert len(counted) >= 15, [a.option_strings for _, a in counted]  # the walk found the options
    unstated = [f"{cmd} {action.option_strings[-1]}" for cmd, action in counted if "at most" not in (action.help or "")]
    assert not unstated, f"options whose help states no bound: {unstated}"


@pytest.mark.parametrize(("attack", "option", "bound"), [
    ("pgd", "steps", bounds.MAX_STEPS), ("ifgsm", "steps", bounds.MAX_STEPS), ("apgd-ce", "steps", bounds.MAX_STEPS),
    ("worst", "steps", bounds.MAX_STEPS), ("pgd", "restarts", bounds.MAX_RESTARTS),
    ("apgd-ce", "restarts", bounds.MAX_RESTARTS), ("square", "restarts", bounds.MAX_RESTARTS),
    ("square", "queries", bounds.MAX_QUERIES), ("apgd-t", "targets", bounds.MAX_TARGETS),
    ("pgd", "seed", bounds.MAX_SEED), ("fgsm", "batch_size", bounds.MAX_BATCH_SIZE),
])
def test_an_attack_refuses_an_option_past_its_bound_and_takes_the_bound(attack, option, bound):
    """``create_attack`` with 10**12 (and with a number of 5,000 digits) is a one-line
    UserError naming the bound; the bound itself is taken."""
    for value in (10**12, 10**5000):
        with pytest.raises(UserError, match=f"is above the bound {bound:,}") as refused:
            create_attack(attack, **{option: value})
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 300
    create_attack(attack, **{option: bound})
