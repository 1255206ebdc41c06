"""Choose the 1-to-N margins δ on the validation split (PROTOCOL.md, "Margins").

Trains each 1-to-N variant at each δ with the dataset's preset and prints JSON lines
with the validation accuracy; docs/margins.md records the evidence and the choice.

    python scripts/margin_sweep.py --dataset digits --deltas 0.25,0.5,1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from robench.config import LossSpec
from robench.data import load_dataset
from robench.presets import ARCHITECTURE, train_spec, with_overrides
from robench.train.members import train_member
from robench.zoo import DEFAULT_HEAD, MemberDef


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--deltas", default="0.25,0.5,1,2,4,8")
    parser.add_argument("--losses", default="1toN:sym,1toN:zero,1toN+ce:sym,hinge:sym")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args()
    if args.dataset == "imagenet32":
        parser.error("imagenet32's validation split is its test set (val_data); choosing δ on it would select "
                     "on the test set. Take cifar10's δ (docs/margins.md)")
    data = load_dataset(args.dataset, args.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        for loss_bound in args.losses.split(","):
            name, bound = loss_bound.split(":")
            for delta in map(float, args.deltas.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    loss = LossSpec(name, delta, bound)
                    member = MemberDef(loss, DEFAULT_HEAD[name], seed, ARCHITECTURE[args.dataset])
                    spec = with_overrides(train_spec(args.dataset, args.preset, name), lr=args.lr)
                    card = train_member(data, member, spec, Path(tmp) / member.name)
                    row = {"dataset": args.dataset, "loss": name, "bound": bound, "delta": delta,
                           "seed": seed, "lr": spec.lr, "val_accuracy": card["val_accuracy"],
                           "test_accuracy": card["clean_test_accuracy"]}
                    sys.stdout.write(json.dumps(row) + "\n")
                    sys.stdout.flush()


if __name__ == "__main__":
    main()
