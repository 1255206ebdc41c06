"""Clean logit margins of the zoo members: z_y − max_{k≠y} z_k on the test split.

A positive margin is a correct prediction; its size is how far the logit of the true
class leads. Members are loaded on the CPU with their weights verified
(:func:`robench.zoo.load`); at most ``max_samples`` test images (the first ones, so every
member sees the same images) keep the report fast on large test sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robench.errors import UserError

MAX_SAMPLES = 2000
CHUNK = 512


@torch.no_grad()
def logit_margins(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Margins z_y − max_{k≠y} z_k of float inputs ``x`` (N, C, H, W) with labels ``y`` (N,)."""
    out = []
    for start in range(0, len(y), CHUNK):
        z = model(x[start : start + CHUNK]).float()  # (b, K)
        yb = y[start : start + CHUNK]  # (b,)
        true = z.gather(1, yb[:, None]).squeeze(1)  # (b,)
        others = z.scatter(1, yb[:, None], float("-inf")).amax(dim=1)  # (b,)
        out.append(true - others)
    return torch.cat(out) if out else torch.empty(0)


def _loss_label(card: dict[str, Any]) -> str:
    loss = card.get("loss", {})
    name = str(loss.get("name", "?"))
    return f"{name} {loss.get('bound')}" if name.startswith("1toN") else name


def member_margins(cards: list[dict[str, Any]], dataset: str, data_root: Path,
                   max_samples: int = MAX_SAMPLES) -> tuple[pd.DataFrame, list[str]]:
    """Long frame (member, loss, head, margin) over the members' test margins, and notes
    on what could not be computed (dataset not loadable, a member failing to load)."""
    from robench.data import load_dataset
    from robench.zoo import load

    empty = pd.DataFrame(columns=["member", "loss", "head", "margin"])
    if not cards:
        return empty, []
    try:
        data = load_dataset(dataset, data_root)
    except (UserError, OSError, ValueError) as exc:
        return empty, [f"clean logit margins skipped: the {dataset} test split is not loadable ({exc})"]
    x = data.to_float(data.test.x[:max_samples])  # (N, C, H, W) in [0, 1]
    y = data.test.y[:max_samples]  # (N,)
    frames, notes = [], []
    for card in cards:
        try:
            model, _ = load(Path(card["path"]), "cpu")
        except (UserError, KeyError, RuntimeError) as exc:
            notes.append(f"margins of {card.get('name')} skipped: {exc}")
            continue
        margins = logit_margins(model, x, y).numpy()
        frames.append(pd.DataFrame({"member": card["name"], "loss": _loss_label(card),
                                    "head": card.get("head", ""), "margin": margins}))
    if len(y) < len(data.test):
        notes.append(f"margins use the first {len(y)} of {len(data.test)} test images")
    return (pd.concat(frames, ignore_index=True) if frames else empty), notes


def margin_summary(margins: pd.DataFrame) -> pd.DataFrame:
    """Per member: samples, share of positive margins (accuracy), quartiles of the margin."""
    if margins.empty:
        return pd.DataFrame(columns=["member", "loss", "head", "n", "positive", "q25", "median", "q75"])
    groups = margins.groupby(["member", "loss", "head"], sort=False)["margin"]
    out = groups.agg(n="size", positive=lambda m: float((m > 0).mean()),
                     q25=lambda m: float(m.quantile(0.25)), median="median",
                     q75=lambda m: float(m.quantile(0.75)))
    return out.reset_index()
