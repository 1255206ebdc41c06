"""The plain-text table printed by ``robench zoo list`` and ``robench train zoo``."""

from __future__ import annotations

from typing import Any

COLUMNS = ("member", "role", "loss", "bound", "head", "delta", "seed", "test_acc", "val_acc", "epochs", "sha256")


def _row(card: dict[str, Any]) -> tuple[str, ...]:
    loss = card["loss"]
    one_to_n = loss["name"].startswith("1toN")
    return (
        card["name"],
        card["role"],
        loss["name"],
        loss["bound"] if one_to_n else "-",
        card["head"],
        f"{loss['delta']:g}" if loss["name"] != "ce" else "-",
        str(card["seed"]),
        _accuracy(card.get("clean_test_accuracy")),
        _accuracy(card.get("val_accuracy")),
        str(card.get("epochs", "-")),
        card["weights_sha256"][:12],
    )


def _accuracy(value: float | None) -> str:
    """An accuracy with four decimals; ``-`` for a card without it."""
    return "-" if value is None else f"{value:.4f}"


def format_zoo_table(cards: list[dict[str, Any]]) -> str:
    """Aligned columns, one member a line."""
    rows = [COLUMNS] + [_row(c) for c in cards]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
