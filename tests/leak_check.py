"""What a test may not leave behind: the process settings (threads, determinism, TF32,
robench's precision and compile defaults, :mod:`robench.settings`) and robench's own
module and class namespaces (the functions tests patch, such as the bad-input tests'
"fail if reached" guards, and module-level constants and tables).

:func:`no_leaks` (autouse in conftest.py) takes a snapshot before each test and compares
after every other fixture of the test has been torn down. A difference fails that test,
naming each changed setting or attribute, and is put back, so one broken teardown is one
failure instead of a failure in every later test that trains, attacks or reports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from robench import settings

Namespace = dict[str, tuple[object, object]]  # "module.attr" -> (owner, value)
Tables = dict[str, tuple[object, object]]  # "module.attr" -> (table, shallow copy)


def _robench_modules() -> list[ModuleType]:
    return [m for name, m in list(sys.modules.items())
            if isinstance(m, ModuleType) and (name == "robench" or name.startswith("robench."))]


def _owners(module: ModuleType) -> Iterator[tuple[str, object]]:
    """The module and each class it defines, with a dotted name."""
    yield module.__name__, module
    for name, value in list(vars(module).items()):
        if isinstance(value, type) and value.__module__ == module.__name__:
            yield f"{module.__name__}.{name}", value


def namespace_snapshot() -> tuple[Namespace, Tables]:
    """Every attribute of robench's loaded modules and their classes, and a shallow copy
    of each module-level dict, list or set."""
    attributes: Namespace = {}
    tables: Tables = {}
    for module in _robench_modules():
        for owner_name, owner in _owners(module):
            for attr, value in list(vars(owner).items()):
                if attr.startswith("__") and attr.endswith("__"):
                    continue
                key = f"{owner_name}.{attr}"
                attributes[key] = (owner, value)
                if owner is module and type(value) in (dict, list, set):
                    tables[key] = (value, value.copy())
    return attributes, tables


def _changed_attributes(before: Namespace) -> list[str]:
    changed = []
    for key, (owner, value) in before.items():
        name = key.rsplit(".", 1)[1]
        now = vars(owner).get(name, _MISSING)
        if now is not value and not _torch_step_hook(now, value):
            changed.append(key)
            setattr(owner, name, value)
    return changed


def _torch_step_hook(now: object, before: object) -> bool:
    """Whether ``now`` is the profiling wrapper PyTorch puts around an optimizer class's
    ``step`` the first time the class is instantiated (``Optimizer._patch_step_function``:
    marked ``hooked``, ``functools.wraps`` of the method): the process's own doing, not a
    test's, and PyTorch would only wrap it again if it were put back."""
    return bool(getattr(now, "hooked", False)) and getattr(now, "__wrapped__", None) is before


def _changed_tables(before: Tables) -> list[str]:
    changed = []
    for key, (table, copy) in before.items():
        if table != copy:
            changed.append(key)
            table.clear()
            if isinstance(table, list):
                table.extend(copy)
            else:
                table.update(copy)
    return changed


_MISSING = object()


def leaks_since(settings_before: settings.ProcessSettings, namespace_before: tuple[Namespace, Tables]) -> list[str]:
    """What changed since the snapshots, each put back: settings as ``name: old -> new``,
    robench attributes and tables by dotted name."""
    settings_now = settings.snapshot()
    leaked = settings.differences(settings_before, settings_now)
    if leaked:
        settings.restore(settings_before)
    attributes, tables = namespace_before
    return leaked + _changed_attributes(attributes) + _changed_tables(tables)


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test that leaves a process setting or a robench attribute changed."""
    settings_before, namespace_before = settings.snapshot(), namespace_snapshot()
    yield
    leaked = leaks_since(settings_before, namespace_before)
    if leaked:
        pytest.fail("the test left process-wide state changed (now put back): " + "; ".join(leaked),
                    pytrace=False)
