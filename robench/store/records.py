"""Typed result records: one frozen dataclass per kind of stored row.

Every record carries its key fields (what cell it is), its measured fields, its
provenance (member hashes, split hash, versions, seeds, precision, thread count and
determinism settings, timestamp), the
``schema_version`` it was written under and the ``run_id`` of the stored run
configuration that made it (:class:`RunRecord`). A record's ``cell`` is the SHA-256 of
its key fields as canonical JSON: the store's unique index, so a key field that is None
still identifies its cell (SQLite treats NULLs in a unique index as distinct).

The attack record holds every parameter of an attack as a field of its own, including
those the FGSM/IFGSM sweeps fix (norm ``linf``, one restart, no query budget, no attack
seed), so stronger attacks fill fields that exist instead of adding columns that older
rows lack. A change of fields raises :data:`SCHEMA_VERSION`; ``robench results migrate``
is the one place that turns older rows into the new shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

SCHEMA_VERSION = 2  # 2: threads and determinism in attack and experiment records
SANITY = "sanity"  # mode of the ε = 1 white-box cells behind the large_eps_to_chance flag


def now() -> str:
    """The current UTC time as stored in records (seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, kw_only=True)
class Record:
    """Fields shared by every stored row; subclasses name their table and key."""

    TABLE: ClassVar[str]
    KEY: ClassVar[tuple[str, ...]]

    run_id: str
    timestamp: str = field(default_factory=now)
    schema_version: int = SCHEMA_VERSION

    @property
    def cell(self) -> str:
        """SHA-256 of the key fields (canonical JSON): equal for two runs of one cell."""
        return cell_of(self.as_dict(), self.KEY)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """Stored columns in order: the record's own fields, then those every record
        has (``run_id``, ``timestamp``, ``schema_version``), then ``cell``."""
        shared = [f.name for f in dataclasses.fields(Record)]
        own = [f.name for f in dataclasses.fields(cls) if f.name not in shared]
        return (*own, *shared, "cell")

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Record":
        """A record from a stored row (``cell`` and derived fields dropped, their values recomputed)."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: v for k, v in row.items() if k in names})


def cell_of(values: dict[str, Any], key: tuple[str, ...]) -> str:
    """SHA-256 of ``values``' ``key`` fields as canonical JSON."""
    payload = json.dumps([values[k] for k in key], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class AttackRecord(Record):
    """One attack cell: ``defender``'s accuracy on ``n`` test images under ``attack``
    crafted on ``attacker`` at ``eps`` (white-box when the two are the same member)."""

    TABLE: ClassVar[str] = "attacks"
    KEY: ClassVar[tuple[str, ...]] = (
        "dataset", "mode", "attacker", "attacker_sha256", "defender", "defender_sha256", "split_hash",
        "attack", "attack_loss", "backend", "norm", "eps", "steps", "step_size", "schedule", "restarts",
        "queries", "attack_seed", "n", "precision", "coupled_batch")

    dataset: str
    mode: str  # whitebox | blackbox | sanity
    attacker: str
    attacker_sha256: str
    attacker_loss: str
    attacker_seed: int
    defender: str
    defender_sha256: str
    defender_loss: str
    defender_bound: str
    defender_delta: float
    defender_head: str
    defender_seed: int
    split_hash: str
    num_classes: int
    attack: str
    attack_loss: str  # ce | cw | model
    backend: str  # native | torchattacks | art
    norm: str = "linf"
    eps: float
    steps: int
    step_size: float
    schedule: str  # "default" or the overridden part, robench.evaluate.schedule.override_label
    restarts: int = 1
    queries: int | None = None  # query budget of a gradient-free attack
    attack_seed: int | None = None  # seed of a random attack
    n: int  # test images attacked (the first n of the test split)
    precision: str  # fp32 | bf16
    coupled_batch: int | None = None  # samples an attack loss that couples them (model) couples at once
    correct: int
    clean_correct: int
    accuracy: float = field(init=False)
    clean_accuracy: float = field(init=False)
    threads: int | None  # intra-op threads of the attacking process; None in rows of schema 1
    determinism: str | None  # robench.determinism.settings_text; None in rows of schema 1
    robench_version: str
    torch_version: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "accuracy", self.correct / self.n)
        object.__setattr__(self, "clean_accuracy", self.clean_correct / self.n)


@dataclass(frozen=True, kw_only=True)
class ExperimentRecord(Record):
    """One cell of the generalization or noisy-label experiment: ``member``'s loss
    trained on one subset or noisy set (``setting``, ``repeat``), tested on the test set."""

    TABLE: ClassVar[str] = "experiments"
    KEY: ClassVar[tuple[str, ...]] = ("dataset", "experiment", "setting", "repeat", "member")

    dataset: str
    experiment: str  # generalization | noise
    setting_name: str  # fraction | rate
    setting: float
    repeat: int
    member: str  # the zoo member whose loss configuration was trained
    model: str  # the trained model's name under zoo/<dataset>/experiments/
    loss: str
    bound: str  # 1-to-N losses only; "" otherwise
    delta: float | None  # None for ce
    head: str
    num_train: int
    num_flipped: int | None  # noise only
    num_test: int
    test_accuracy: float
    stop_reason: str
    epochs: int
    steps: int
    weights_sha256: str
    split_hash: str
    seed: int  # the member's seed
    train_seed: int
    preset: str
    spec_hash: str | None  # robench.experiments.common.spec_hash; None in rows from before it
    threads: int | None  # intra-op threads the model trained on (its card's); None when the card lacks it
    determinism: str | None  # the card's determinism settings as robench.determinism.settings_text
    robench_version: str
    torch_version: str


@dataclass(frozen=True, kw_only=True)
class FlagRecord(Record):
    """One validity check of the stored attack cells (docs/flags.md)."""

    TABLE: ClassVar[str] = "flags"
    KEY: ClassVar[tuple[str, ...]] = ("flag", "scope")

    flag: str
    passed: bool
    scope: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """A stored run configuration; ``run_id`` is the short SHA-256 of ``config``, so the
    same command run again (a resumed run) has the same id."""

    TABLE: ClassVar[str] = "runs"

    run_id: str
    kind: str  # attack | experiment | migration
    config: str  # canonical JSON
    created: str = field(default_factory=now)
    robench_version: str
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, kind: str, config: dict[str, Any], robench_version: str) -> "RunRecord":
        text = json.dumps({"kind": kind, **config}, sort_keys=True, separators=(",", ":"))
        return cls(run_id=hashlib.sha256(text.encode()).hexdigest()[:16], kind=kind, config=text,
                   robench_version=robench_version)

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECORD_TYPES: tuple[type[Record], ...] = (AttackRecord, ExperimentRecord, FlagRecord)


def sql_type(cls: type, name: str) -> tuple[str, bool]:
    """(SQLite type, nullable) of field ``name`` of ``cls``, from its annotation."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    nullable = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    return {str: "TEXT", int: "INTEGER", float: "REAL", bool: "INTEGER"}[base], nullable


def bool_fields(cls: type) -> list[str]:
    """Fields of ``cls`` annotated ``bool`` (stored as 0/1)."""
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if hints[f.name] is bool]
