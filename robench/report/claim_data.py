"""What a claim compares: one value per member configuration and unit.

A claim is about member configurations (loss, bound, δ and head: ``1toN-sym-d4``,
``ce-unit``), and its unit of replication is the training seed (attack claims: the
defender's seed) or the repeat (experiment claims: the subset or noisy set). The value of
a configuration in a unit is its accuracy averaged over the claim's cells: for attack
claims every (mode, attacker, attack, ε > 0) of the records, black-box cells only from
CE attackers whose seed no defender uses (PROTOCOL.md's threat model); for experiment
claims the one cell at the smallest (generalization) or largest (noise) setting. Only
cells that every compared configuration has in every one of its units count, so no
configuration's average runs over other cells than another's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from robench.config import LossSpec
from robench.errors import UserError
from robench.zoo import configuration_name

CE = "ce"
UNIT_COLUMNS = ["configuration", "loss", "bound", "delta", "head", "unit", "cell", "accuracy", "member",
                "attacker"]


def configuration_of(loss: str, bound: str | None, delta: float | None, head: str) -> str:
    """The configuration label of a member from its recorded loss, bound, δ and head."""
    spec = LossSpec(loss, 1.0 if delta is None or (isinstance(delta, float) and math.isnan(delta)) else float(delta),
                    bound or "sym")
    return configuration_name(spec, head)


def independent_ce_attackers(blackbox: pd.DataFrame) -> list[str]:
    """The CE attackers of black-box records whose seed no defender other than themselves
    uses (PROTOCOL.md: "a CE model trained with another seed than every defender"), by name."""
    chosen = []
    for name, own in blackbox[blackbox["attacker_loss"] == CE].groupby("attacker", sort=True):
        others = set(blackbox.loc[blackbox["defender"] != name, "defender_seed"])
        if not set(own["attacker_seed"]) & others:
            chosen.append(name)
    return chosen


@dataclass
class Units:
    """A claim source's accuracies: one row per (configuration, unit), one column per
    cell (NaN where that member lacks the cell); each configuration's loss, bound, δ and
    head; and the members (defender and attackers) behind each row."""

    values: pd.DataFrame  # index (configuration, unit); columns: cell labels
    configurations: pd.DataFrame  # index configuration; loss, bound, delta, head
    members: pd.Series  # index (configuration, unit) -> frozenset of member names

    @classmethod
    def of(cls, rows: pd.DataFrame) -> "Units":
        """From long rows: configuration, loss, bound, delta, head, unit, cell, accuracy, member, attacker."""
        if rows.empty:
            index = pd.MultiIndex.from_tuples([], names=["configuration", "unit"])
            return cls(pd.DataFrame(index=index), pd.DataFrame(columns=["loss", "bound", "delta", "head"]),
                       pd.Series(index=index, dtype=object))
        _refuse_duplicate_cells(rows)
        values = rows.pivot(index=["configuration", "unit"], columns="cell", values="accuracy")
        configurations = rows.drop_duplicates("configuration").set_index("configuration")[
            ["loss", "bound", "delta", "head"]]
        names = pd.concat([rows[["configuration", "unit", "member"]],
                           rows.loc[rows["attacker"] != "", ["configuration", "unit", "attacker"]].rename(
                               columns={"attacker": "member"})])
        members = names.groupby(["configuration", "unit"])["member"].agg(frozenset)
        return cls(values, configurations, members)

    def averaged(self, configurations: list[str]) -> tuple[pd.DataFrame, int]:
        """The value of each of ``configurations`` in each of its units (configuration ×
        unit, NaN where a configuration lacks a unit), averaged over the cells that every
        one of them has in every one of its units, and that number of cells."""
        mine = self.values[self.values.index.get_level_values("configuration").isin(configurations)]
        common = mine.columns[mine.notna().all(axis=0)]
        return mine[common].mean(axis=1).unstack("unit"), len(common)


def _refuse_duplicate_cells(rows: pd.DataFrame, shown: int = 3) -> None:
    """A UserError naming the cells that hold more than one value for one configuration
    and unit (two members of one configuration and seed, say): a claim's value is one
    measurement per cell, and averaging two would publish a number nobody measured."""
    twice = rows[rows.duplicated(["configuration", "unit", "cell"], keep=False)]
    if twice.empty:
        return
    groups = twice.groupby(["configuration", "unit", "cell"], sort=True)["member"].agg(lambda m: sorted(set(m)))
    listed = "; ".join(f"{c} unit {u} cell '{' '.join(cell.split())}' from {', '.join(m)}"
                       for (c, u, cell), m in list(groups.items())[:shown])
    more = f" (and {len(groups) - shown} more)" if len(groups) > shown else ""
    raise UserError(f"{len(groups)} claim cells are stored more than once, which claims never average: "
                    f"{listed}{more}; remove the extra members or records")


def zoo_attackers(attacks: pd.DataFrame) -> list[str]:
    """The members that serve as black-box attackers (:func:`independent_ce_attackers` of
    the black-box records): not part of the replicated defender configurations, so their
    own white-box cells stay out of claims and figures."""
    return independent_ce_attackers(attacks[attacks["mode"] == "blackbox"]) if not attacks.empty else []


def attack_units(attacks: pd.DataFrame, modes: tuple[str, ...], attack_names: tuple[str, ...],
                 eps: float | None = None) -> Units:
    """The defenders' accuracies in ``modes`` under ``attack_names`` at ε > 0 (or at
    ``eps`` only), by configuration and seed; a cell is (mode, attacker, attack, ε). The
    zoo's attackers are no defenders here (:func:`zoo_attackers`)."""
    parts = []
    if not attacks.empty:
        attacks = attacks[~attacks["defender"].isin(zoo_attackers(attacks))]
    for mode in modes if not attacks.empty else ():
        rows = attacks[(attacks["mode"] == mode) & (attacks["eps"] > 0) & attacks["attack"].isin(attack_names)]
        if mode == "blackbox":
            rows = rows[rows["attacker"].isin(independent_ce_attackers(rows))]
        if eps is not None:
            rows = rows[rows["eps"] == eps]
        parts.append(pd.DataFrame({
            "configuration": _configurations(rows, "defender_loss", "defender_bound", "defender_delta",
                                             "defender_head"),
            "loss": rows["defender_loss"], "bound": rows["defender_bound"], "delta": rows["defender_delta"],
            "head": rows["defender_head"], "unit": rows["defender_seed"],
            "cell": [f"{mode} {a if mode == 'blackbox' else ''} {k} {e!r}"
                     for a, k, e in zip(rows["attacker"], rows["attack"], rows["eps"])],
            "accuracy": rows["accuracy"], "member": rows["defender"],
            "attacker": rows["attacker"] if mode == "blackbox" else ""}))
    return Units.of(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=UNIT_COLUMNS))


def experiment_units(rows: pd.DataFrame, highest: bool) -> Units:
    """The members' test accuracies at the smallest or ``highest`` setting, by
    configuration and repeat; the setting is the one cell."""
    if rows.empty:
        return Units.of(pd.DataFrame(columns=UNIT_COLUMNS))
    setting = rows["setting"].max() if highest else rows["setting"].min()
    at = rows[rows["setting"] == setting]
    return Units.of(pd.DataFrame({
        "configuration": _configurations(at, "loss", "bound", "delta", "head"),
        "loss": at["loss"], "bound": at["bound"], "delta": at["delta"], "head": at["head"],
        "unit": at["repeat"], "cell": f"setting {setting!r}", "accuracy": at["test_accuracy"],
        "member": at["member"], "attacker": ""}))


def _configurations(rows: pd.DataFrame, loss: str, bound: str, delta: str, head: str) -> list[str]:
    """The configuration label of each row, computed once per distinct combination."""
    keys = list(zip(rows[loss], rows[bound], rows[delta], rows[head]))
    labels = {k: configuration_of(*k) for k in set(keys)}
    return [labels[k] for k in keys]
