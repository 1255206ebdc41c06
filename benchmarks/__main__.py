"""``python3 -m benchmarks [attacks|whitebox|train|loss|store|worst-case|all] [options] --out FILE.json``

Runs the chosen benchmarks (each measures its own baseline in the same run), writes one
JSON document atomically (machine information, the options used, and per benchmark the
figures and ratios) and prints a short summary. ``--quick`` picks tiny sizes (a smoke
test: its figures say nothing about speed); explicit options override the defaults.
Full-size defaults depend on the device (``--device auto|cpu|cuda``): see ``defaults``.
``all`` runs every benchmark but ``worst-case``, which runs only when named.
Exit code 0 on success, 2 on a bad option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks import attack_matrix, loss_step, store_append, training, worst_case
from benchmarks.common import machine_info
from robench.device import DEVICE_CHOICES, resolve_device
from robench.errors import UserError
from robench.evaluate.attack_runner import EPS_GRIDS, parse_eps
from robench.io import atomic_write_json

BENCHMARKS = ("attacks", "whitebox", "train", "loss", "store")
NAMED_ONLY = ("worst-case",)  # not part of ``all``: run when named
ATTACK_MODES = {"attacks": "blackbox", "whitebox": "whitebox"}  # benchmark -> attack_matrix mode


def defaults(device: torch.device, quick: bool) -> dict[str, Any]:
    """The size of every benchmark on ``device`` (full size, or tiny with ``quick``)."""
    cuda = device.type == "cuda"
    if quick:
        return {"models": 4, "samples": 8, "eps": list(EPS_GRIDS["mnist"][:3]), "train_steps": 10,
                "member_batch": 16, "chunk_size": 0, "batch": 16,
                "train_samples": {"mnist-cnn": 32, "wrn-28-2": 32},
                "extra_epochs": 1, "warmup": 1, "repeats": 1, "loss_reps": 20, "steps": 1, "rounds": 1,
                "rows": 2000, "batch_rows": 100,
                "wc_samples": 8, "attack_steps": 2, "targets": 1, "queries": 10}
    return {"models": 8, "samples": 10000 if cuda else 256, "eps": list(EPS_GRIDS["mnist"]), "train_steps": 50,
            "member_batch": 64, "chunk_size": 0, "batch": 256,
            "train_samples": ({"mnist-cnn": 50176, "wrn-28-2": 50176} if cuda
                              else {"mnist-cnn": 1024, "wrn-28-2": 512}),
            "extra_epochs": 1, "warmup": 5 if cuda else 1, "repeats": 3,
            "loss_reps": 1000 if cuda else 200, "steps": 20 if cuda else 2, "rounds": 1,
            "rows": 100000, "batch_rows": 100,
            "wc_samples": 10000 if cuda else 512, "attack_steps": 25, "targets": 3, "queries": 300}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m benchmarks", description=__doc__.split("\n\n")[1])
    p.add_argument("benchmark", nargs="?", default="all", choices=(*BENCHMARKS, *NAMED_ONLY, "all"))
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads before running")
    g = p.add_argument_group("attacks and whitebox")
    g.add_argument("--models", type=int, help="mnist-cnn members (default 8)")
    g.add_argument("--samples", type=int,
                   help="test images (default 10000 on CUDA, 256 on CPU; worst-case: 512 on CPU)")
    g.add_argument("--eps", help="comma-separated eps (default robench's mnist grid 0,0.05,...,0.3)")
    g.add_argument("--train-steps", type=int, help="Adam steps per member on synthetic data (default 50)")
    g.add_argument("--chunk-size", type=int,
                   help="test images per chunk, all implementations (default: robench's for the device)")
    g.add_argument("--rounds", type=int, help="interleaved timing rounds whose median is reported (default 1)")
    g = p.add_argument_group("worst-case (robench's aa ensemble against a torchattacks MultiAttack loop)")
    g.add_argument("--attack-steps", type=int, help="steps S of APGD-CE and of APGD-T per target (default 25)")
    g.add_argument("--targets", type=int, help="target classes T of APGD-T (default 3)")
    g.add_argument("--queries", type=int, help="queries Q of Square, clean query and start included (default 300)")
    g = p.add_argument_group("train and loss")
    g.add_argument("--batch", type=int, help="training batch (default 256)")
    g.add_argument("--train-samples", type=int, help="images per training epoch for both models")
    g.add_argument("--extra-epochs", type=int, help="E of the robench 1 vs 1+E epoch timing (default 1)")
    g.add_argument("--repeats", type=int, help="repeats whose median is reported (default 3)")
    g.add_argument("--steps", type=int, help="training steps per repeat in the loss benchmark")
    g = p.add_argument_group("store")
    g.add_argument("--rows", type=int, help="attack records appended (default 100000)")
    g.add_argument("--batch-rows", type=int, help="records per append (default 100)")
    args = p.parse_args(argv)
    for name in ("threads", "models", "samples", "train_steps", "chunk_size", "rounds", "batch", "train_samples",
                 "extra_epochs", "repeats", "steps", "rows", "batch_rows", "attack_steps", "targets"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.queries is not None and args.queries < 3:
        p.error(f"--queries must be at least 3 (the clean query, the start and one iteration), got {args.queries}")
    return args


def options(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The defaults for ``device`` with the explicit options applied."""
    opts = defaults(device, args.quick)
    for name in ("models", "samples", "train_steps", "chunk_size", "rounds", "batch", "extra_epochs", "repeats",
                 "steps", "rows", "batch_rows", "attack_steps", "targets", "queries"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.samples is not None:
        opts["wc_samples"] = args.samples
    if args.train_samples is not None:
        opts["train_samples"] = {arch: args.train_samples for arch in opts["train_samples"]}
    if args.eps is not None:
        opts["eps"] = parse_eps(args.eps)
    return opts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        opts = options(args, device)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = BENCHMARKS if args.benchmark == "all" else (args.benchmark,)
    doc: dict[str, Any] = {"machine": machine_info(device), "benchmarks": list(chosen),
                           "options": {"device": args.device, "quick": args.quick, **opts}, "results": {}}
    lines: list[str] = []
    for name, mode in ATTACK_MODES.items():
        if name in chosen:
            result = attack_matrix.run(device, opts["models"], opts["samples"], opts["eps"], opts["train_steps"],
                                       opts["chunk_size"], opts["member_batch"], mode=mode, rounds=opts["rounds"])
            doc["results"][name] = result
            lines += attack_matrix.summary_lines(result)
    if "worst-case" in chosen:
        result = worst_case.run(device, opts["models"], opts["wc_samples"], opts["eps"], opts["train_steps"],
                                opts["chunk_size"], opts["member_batch"], steps=opts["attack_steps"],
                                targets=opts["targets"], queries=opts["queries"], rounds=opts["rounds"])
        doc["results"]["worst-case"] = result
        lines += worst_case.summary_lines(result)
    if "train" in chosen:
        result = training.run(device, opts["train_samples"], opts["batch"], opts["extra_epochs"], opts["warmup"],
                              opts["repeats"])
        doc["results"]["train"] = result
        lines += training.summary_lines(result)
    if "loss" in chosen:
        result = loss_step.run(device, opts["batch"], opts["loss_reps"], opts["steps"], opts["repeats"])
        doc["results"]["loss"] = result
        lines += loss_step.summary_lines(result)
    if "store" in chosen:
        result = store_append.run(opts["rows"], opts["batch_rows"])
        doc["results"]["store"] = result
        lines += store_append.summary_lines(result)
    atomic_write_json(args.out, doc)
    machine = doc["machine"]
    print(f"{machine['device_name']} ({machine['device']}), torch {machine['torch_version']}, "
          f"{machine['torch_threads']} threads; written to {args.out}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
