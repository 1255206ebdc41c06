"""What CI needs to know of pyproject.toml and the README, read from them so it cannot drift.

    python3 .ci/deps.py test-command    the README's second quick-start command (the tests)
    python3 .ci/deps.py floors          a pip constraints file pinning every declared floor
    python3 .ci/deps.py versions        each declared dependency's installed version (run in the venv)
    python3 .ci/deps.py at-floors       exit 1 unless every floor is the installed version (run in the venv)

The floors file pins each ``>=X`` of ``[project] dependencies`` and the ``test`` extra to
``==X``; a dependency whose floor cannot be installed here is named in UNTESTED_FLOORS and
left to the newest version its range allows (the README's install notes say which).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# torch below 2.14.1 and its torchvision are CUDA wheels of several GB on the registry,
# and the older CPU wheel on this disk has no torchvision that imports beside it.
UNTESTED_FLOORS = {"torch", "torchvision"}


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["test"]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def test_command() -> str:
    """The second ```bash block of the README's quick start."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    return blocks[1].strip()


def floors() -> str:
    lines = []
    for requirement in _requirements():
        floor = re.search(r">=\s*([0-9][^,;\s]*)", requirement)
        if floor and _name(requirement) not in UNTESTED_FLOORS:
            lines.append(f"{_name(requirement)}=={floor.group(1)}")
    return "\n".join(lines)


def versions() -> str:
    return "\n".join(f"{_name(r)}=={metadata.version(_name(r))}" for r in _requirements())


def at_floors() -> str:
    """"" when every pinned floor is installed; else the mismatches, and exit status 1."""
    from packaging.version import Version

    wrong = []
    for line in floors().splitlines():
        name, floor = line.split("==")
        if Version(metadata.version(name)) != Version(floor):
            wrong.append(f"{name} {metadata.version(name)} installed, floor {floor}")
    if wrong:
        sys.exit("not at the declared floors: " + "; ".join(wrong))
    return "every declared floor is the installed version"


if __name__ == "__main__":
    print({"test-command": test_command, "floors": floors, "versions": versions,
           "at-floors": at_floors}[sys.argv[1]]())
