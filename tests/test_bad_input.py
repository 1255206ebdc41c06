"""Bad input to every command and option: exit 2, one line naming the value and what is
valid, no traceback, nothing written.

One table, :data:`CASES`: each case is a command, the option (or positional) it is
about, its arguments and the text its one stderr line must hold. Every case runs
``robench.cli.main`` in-process in a fresh working folder; the folders it may touch (the
working folder, a zoo or results folder it names) are snapshot before and after and must
be unchanged. :func:`test_every_option_has_a_bad_input_case` walks the parser, so an
option added without a case here fails. :data:`CASES_PER_COMMAND` counts the cases.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import stat
import subprocess
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from robench.cli import build_parser, main


@dataclass(frozen=True)
class Case:
    """``robench <command> <args>`` must fail on ``option`` with ``expect`` in its one line.

    Placeholders in ``args``: {zoo} a digits zoo of two untrained members (read only),
    {store} a results folder holding one stored run, {file} a file, {ro} a folder nobody
    may write into, {missing} a path that does not exist, {defs} a zoo folder holding
    ``toml`` as ``digits.toml``, {loop} a symbolic link to itself. ``loop``: a path in the
    working folder made a link to itself (a default folder such as ``zoo``)."""

    command: str
    option: str
    args: str
    expect: str | tuple[str, ...]  # several: each must be in the line
    toml: str | None = None
    loop: str = ""

    @property
    def expected(self) -> tuple[str, ...]:
        return (self.expect,) if isinstance(self.expect, str) else self.expect

    @property
    def argv(self) -> list[str]:
        return [*self.command.split(), *shlex.split(self.args)]

    @property
    def id(self) -> str:
        args = self.args if len(self.args) <= 80 else f"{self.args[:60]}...({len(self.args):,} characters)"
        return f"{self.command or 'robench'}|{self.option}|{args}" + ("|" + self.toml_label if self.toml else "") + \
            (f"|{self.loop} a link loop" if self.loop else "")

    @property
    def toml_label(self) -> str:
        return " ".join(self.toml.split())[-40:] if self.toml else ""


# A valid one-member definition; the TOML cases change one thing.
DEFS = 'architecture = "digits-cnn"\nseeds = [0]\n[[members]]\nloss = "ce"\n'
ATTACKER = '[[attackers]]\nloss = "ce"\nseeds = [100]\n'
WB = "--whitebox --dataset digits"
BB = "--blackbox --dataset digits"
TZ = "--dataset digits --zoo-dir {defs}"
SEEDS = "seeds must be a non-empty list of integers from 0 to"
DELTA_RANGE = "a finite number in (0, 1000] (the shipped zoos use 1 and 4)"  # robench.config.DELTA_RANGE
DELTA = "a member entry needs a loss (ce, hinge, 1toN, 1toN+ce) and a number as delta"
RP = "--dataset digits --results-dir {store}"
# Counts and lists past their bounds (robench.bounds), and values no line may echo whole.
HUGE = "1000000000000"
DIGITS_5000 = "9" * 5000
LONG_VALUE = "x" * 100_000
LONG_NAME = "a" * 300
EPS_101 = ",".join(f"{i / 1000:g}" for i in range(101))
NAMES_1001 = ",".join(f"m{i}" for i in range(1001))
SEEDS_1001 = ",".join(str(i) for i in range(1001))
LOOP = "is a loop of symbolic links (ELOOP)"
TOO_LONG = "a name in the path is 300 bytes long, above the 255 a file system allows"

C = Case
CASES: list[Case] = [
    # --- robench and its command groups
    C("", "command", "nope", "invalid choice: 'nope'"),
    C("train", "what", "nope", "invalid choice: 'nope'"),
    C("zoo", "what", "nope", "invalid choice: 'nope'"),
    C("results", "what", "nope", "invalid choice: 'nope'"),
    # --- run
    C("run", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("run", "--preset", "--preset huge", "unknown preset 'huge'; valid: paper, quick"),
    C("run", "--num-samples", "--num-samples -1", "--num-samples: expected an integer >= 0, got '-1'"),
    C("run", "--num-samples", "--num-samples 1.5", "--num-samples: expected an integer >= 0, got '1.5'"),
    C("run", "--num-samples", "--num-samples x", "--num-samples: expected an integer >= 0, got 'x'"),
    C("run", "--device", "--device tpu", "unknown device 'tpu'; valid: auto, cpu, cuda"),
    C("run", "--precision", "--precision fp16", "--precision: invalid choice: 'fp16'"),
    C("run", "--zoo-dir", "--zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("run", "--zoo-dir", "--zoo-dir {ro}/zoo", "--zoo-dir: cannot write into"),
    C("run", "--zoo-dir", "--zoo-dir=", "--zoo-dir: expected a folder, got ''"),
    C("run", "--zoo-dir", "--zoo-dir {defs}", "unknown member keys ['margin']",
      toml=DEFS + "margin = 1\n"),
    C("run", "--reports-dir", "--reports-dir {file}", "--reports-dir: expected a folder, got the file"),
    C("run", "--reports-dir", "--reports-dir {file}/reports", "--reports-dir: cannot create folder"),
    C("run", "--reports-dir", "--reports-dir {ro}", "--reports-dir: cannot write into"),
    C("run", "--data-root", "--data-root {file}", "--data-root: expected a folder, got the file"),
    # --- train zoo
    C("train zoo", "--dataset", "", "the following arguments are required: --dataset"),
    C("train zoo", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("train zoo", "--preset", "--dataset digits --preset huge", "unknown preset 'huge'; valid: paper, quick"),
    C("train zoo", "--members", "--dataset digits --members ce-s9", "unknown member 'ce-s9'; valid: ce-s0"),
    C("train zoo", "--members", "--dataset digits --members=", "--members: expected comma-separated names, got ''"),
    C("train zoo", "--members", "--dataset digits --members=,", "--members: expected comma-separated names, got ','"),
    C("train zoo", "--seeds", "--dataset digits --seeds x", "--seeds: expected comma-separated integers >= 0, got 'x'"),
    C("train zoo", "--seeds", "--dataset digits --seeds=-1",
      "--seeds: expected comma-separated integers >= 0, got '-1'"),
    C("train zoo", "--seeds", "--dataset digits --seeds=", "--seeds: expected comma-separated integers >= 0, got ''"),
    C("train zoo", "--seeds", "--dataset digits --seeds 1.5", "got '1.5'"),
    C("train zoo", "--seeds", "--dataset digits --seeds 7", "no member of the digits zoo has seed 7; its seeds: 0, 1"),
    C("train zoo", "--seeds", "--dataset digits --members ce-s0 --seeds 1",
      "no member of the digits zoo is one of --members ce-s0 with one of --seeds 1"),
    C("train zoo", "--device", "--dataset digits --device tpu", "unknown device 'tpu'; valid: auto, cpu, cuda"),
    C("train zoo", "--precision", "--dataset digits --precision fp16", "--precision: invalid choice: 'fp16'"),
    C("train zoo", "--zoo-dir", "--dataset digits --zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("train zoo", "--zoo-dir", "--dataset digits --zoo-dir {ro}", "--zoo-dir: cannot write into"),
    C("train zoo", "--data-root", "--dataset digits --data-root {file}",
      "--data-root: expected a folder, got the file"),
    C("train zoo", "--data-root", "--dataset mnist --data-root {missing}", "MNIST/raw/train-images-idx3-ubyte"),
    # zoo definitions (--zoo-dir {defs} holds digits.toml)
    C("train zoo", "--zoo-dir", TZ, "not valid TOML", toml="architecture = \n"),
    C("train zoo", "--zoo-dir", TZ, "unknown keys ['colour']; valid: ",
      toml=DEFS.replace("seeds", "colour = 1\nseeds")),
    C("train zoo", "--zoo-dir", TZ, "unknown member keys ['margin']; valid: ", toml=DEFS + "margin = 1\n"),
    C("train zoo", "--zoo-dir", TZ, "needs 'architecture'", toml=DEFS.replace('architecture = "digits-cnn"\n', "")),
    C("train zoo", "--zoo-dir", TZ, 'architecture is "nope"; valid: digits-cnn',
      toml=DEFS.replace("digits-cnn", "nope")),
    C("train zoo", "--zoo-dir", TZ, "architecture is 3; valid: digits-cnn", toml=DEFS.replace('"digits-cnn"', "3")),
    C("train zoo", "--zoo-dir", TZ, (SEEDS, 'got "0"'),
      toml=DEFS.replace("[0]", '"0"')),
    C("train zoo", "--zoo-dir", TZ, (SEEDS, "got []"),
      toml=DEFS.replace("[0]", "[]")),
    C("train zoo", "--zoo-dir", TZ, (SEEDS, "got [-1]"),
      toml=DEFS.replace("[0]", "[-1]")),
    C("train zoo", "--zoo-dir", TZ, (SEEDS, "got [true]"),
      toml=DEFS.replace("[0]", "[true]")),
    C("train zoo", "--zoo-dir", TZ, (SEEDS, 'got "1"'),
      toml=DEFS + 'seeds = "1"\n'),
    C("train zoo", "--preset", "--dataset digits --zoo-dir {defs} --preset paper",
      "seeds has no entry for preset 'paper'; it has quick", toml=DEFS.replace("[0]", "{quick = [0]}")),
    C("train zoo", "--zoo-dir", TZ, (DELTA, '"delta":[1]'), toml=DEFS + "delta = [1]\n"),
    C("train zoo", "--zoo-dir", TZ, (DELTA, '"delta":"x"'), toml=DEFS + 'delta = "x"\n'),
    C("train zoo", "--zoo-dir", TZ, (DELTA, '"delta":true'), toml=DEFS + "delta = true\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got -1.0", toml=DEFS + "delta = -1\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got nan", toml=DEFS + "delta = nan\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got inf", toml=DEFS + "delta = inf\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got 0.0", toml=DEFS + "delta = 0\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got 1.797e+308",
      toml=DEFS.replace('"ce"', '"hinge"') + "delta = 1.797e308\n"),
    C("train zoo", "--zoo-dir", TZ, f"margin delta must be {DELTA_RANGE}, got 1000.5",
      toml=DEFS.replace('"ce"', '"1toN"') + "delta = 1000.5\n"),
    C("run", "--zoo-dir", "--zoo-dir {defs}", f"margin delta must be {DELTA_RANGE}, got 1.797e+308",
      toml=DEFS.replace('"ce"', '"hinge"') + "delta = 1.797e308\n"),
    C("train zoo", "--zoo-dir", TZ, "unknown loss 3; valid: ce, hinge, 1toN, 1toN+ce",
      toml=DEFS.replace('"ce"', "3")),
    C("train zoo", "--zoo-dir", TZ, "unknown loss 'nope'; valid: ce, hinge, 1toN, 1toN+ce",
      toml=DEFS.replace('"ce"', '"nope"')),
    C("train zoo", "--zoo-dir", TZ, ("a member entry needs a loss (ce, hinge, 1toN, 1toN+ce)", '{"head":"unit"}'),
      toml=DEFS.replace('loss = "ce"', 'head = "unit"')),
    C("train zoo", "--zoo-dir", TZ, 'head is "foo"; valid: linear, unit', toml=DEFS + 'head = "foo"\n'),
    C("train zoo", "--zoo-dir", TZ, "head is 1; valid: linear, unit", toml=DEFS + "head = 1\n"),
    C("train zoo", "--zoo-dir", TZ, "unknown bound 'x'; valid: sym, zero, shifted",
      toml=DEFS.replace('"ce"', '"1toN"') + 'bound = "x"\n'),
    C("train zoo", "--zoo-dir", TZ, "members must be [[members]] tables, got [1]",
      toml=DEFS.split("[[")[0] + "members = [1]\n"),
    C("train zoo", "--zoo-dir", TZ, "member 'ce-s0' is defined twice", toml=DEFS + '[[members]]\nloss = "ce"\n'),
    C("train zoo", "--zoo-dir", TZ, "attacker seed 0 is also a defender's seed",
      toml=DEFS + ATTACKER.replace('"ce"', '"hinge"').replace("[100]", "[0]")),
    C("train zoo", "--zoo-dir", TZ, "an [[attackers]] entry needs its own seeds",
      toml=DEFS + ATTACKER.replace("seeds = [100]\n", "")),
    # --- zoo list
    C("zoo list", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("zoo list", "--zoo-dir", "--zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("zoo list", "--zoo-dir", "--dataset digits --zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("zoo list", "--data-root", "--data-root {file}", "--data-root: expected a folder, got the file"),
    # --- zoo migrate
    C("zoo migrate", "--zoo-dir", "--zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("zoo migrate", "--zoo-dir", "--zoo-dir {missing}", "--zoo-dir: no folder"),
    C("zoo migrate", "--results-dir", "--zoo-dir {zoo} --results-dir {missing}", "--results-dir: no folder"),
    C("zoo migrate", "--results-dir", "--zoo-dir {zoo} --results-dir {ro}", "no result store in"),
    # --- attack
    C("attack", "--whitebox", "--dataset digits", "one of the arguments --whitebox --blackbox is required"),
    C("attack", "--blackbox", "--whitebox --blackbox --dataset digits", "--blackbox: not allowed with argument"),
    C("attack", "--dataset", "--whitebox", "the following arguments are required: --dataset"),
    C("attack", "--dataset", "--whitebox --dataset nope", "unknown dataset 'nope'; valid: "),
    C("attack", "--attacks", f"{WB} --attacks nope", "unknown attack 'nope'; valid: "),
    C("attack", "--attacks", f"{WB} --attacks=", "--attacks: expected comma-separated names, got ''"),
    C("attack", "--attacks", f"{WB} --attacks=,", "--attacks: expected comma-separated names, got ','"),
    C("attack", "--attacks", f"{WB} --attacks fgsm,fgm", "mixes the norms l2, linf"),
    C("attack", "--attacks", f"{BB} --attacks worst", "'worst' is a white-box worst case"),
    C("attack", "--eps", f"{WB} --eps=-0.1", "eps must be a finite number >= 0, got -0.1"),
    C("attack", "--eps", f"{WB} --eps nan", "eps must be a finite number >= 0, got nan"),
    C("attack", "--eps", f"{WB} --eps inf", "eps must be a finite number >= 0, got inf"),
    C("attack", "--eps", f"{WB} --eps=-inf", "eps must be a finite number >= 0, got -inf"),
    C("attack", "--eps", f"{WB} --eps 1.5", "eps must be in [0, 1] (pixels lie in [0, 1]), got 1.5"),
    C("attack", "--eps", f"{WB} --eps 0.1,300/255", "eps must be in [0, 1] (pixels lie in [0, 1]), got 1.17"),
    C("attack", "--eps", f"{WB} --attacks fgm --eps 9",
      "eps must be in [0, 8] (the l2 range of inputs of 64 values), got 9.0"),
    C("attack", "--eps", f"{WB} --eps=", "no epsilon given; give values in [0, 1]"),
    C("attack", "--eps", f"{WB} --eps=,", "no epsilon given; give values in [0, 1]"),
    C("attack", "--eps", f"{WB} --eps abc", "epsilon 'abc' is not a number"),
    C("attack", "--eps", f"{WB} --eps 1/0", "epsilon '1/0' is not a number"),
    C("attack", "--eps", f"{WB} --eps 0.1,8/x", "epsilon '8/x' is not a number"),
    C("attack", "--attacker", f"{BB} --zoo-dir {{zoo}} --attacker nope", "unknown attacker 'nope'; valid: all, "),
    C("attack", "--attacker", f"{WB} --attacker ce-s100", "--attacker 'ce-s100' applies to --blackbox runs only"),
    C("attack", "--defenders", f"{WB} --zoo-dir {{zoo}} --defenders nope", "unknown defender 'nope'; valid: "),
    C("attack", "--defenders", f"{WB} --defenders=", "--defenders: expected comma-separated names, got ''"),
    C("attack", "--attack-loss", f"{WB} --attack-loss nope", "unknown attack loss 'nope'; valid: ce, cw"),
    C("attack", "--attack-loss", f"{WB} --attacks apgd-ce --attack-loss cw",
      "attack 'apgd-ce' ascends its own ce loss"),
    C("attack", "--attack-loss", f"{WB} --backend torchattacks --attack-loss cw",
      "backend 'torchattacks' supports only the 'ce' attack loss for fgsm, not 'cw'"),
    C("attack", "--backend", f"{WB} --backend nope", "unknown attack backend 'nope'; valid: native, torchattacks, art"),
    C("attack", "--backend", f"{WB} --backend art --attacks apgd-t", "backend 'art' has no apgd-t; it runs: "),
    C("attack", "--steps", f"{WB} --steps 0", "--steps: expected an integer >= 1, got '0'"),
    C("attack", "--steps", f"{WB} --steps=-3", "--steps: expected an integer >= 1, got '-3'"),
    C("attack", "--steps", f"{WB} --steps 1.5", "--steps: expected an integer >= 1, got '1.5'"),
    C("attack", "--steps", f"{WB} --steps x", "--steps: expected an integer >= 1, got 'x'"),
    C("attack", "--steps", f"{WB} --attacks fgsm --steps 5",
      "no attack of --attacks fgsm takes --steps; attacks that take it: "),
    C("attack", "--step-size", f"{WB} --step-size 2", "--step-size: expected a step size in (0, 1]"),
    C("attack", "--step-size", f"{WB} --step-size 1/0", "like 0.004 or 1/255, got '1/0'"),
    C("attack", "--step-size", f"{WB} --step-size 0", "got '0'"),
    C("attack", "--step-size", f"{WB} --step-size=-0.1", "got '-0.1'"),
    C("attack", "--step-size", f"{WB} --step-size nan", "got 'nan'"),
    C("attack", "--step-size", f"{WB} --step-size inf", "got 'inf'"),
    C("attack", "--step-size", f"{WB} --step-size x", "got 'x'"),
    C("attack", "--step-size", f"{WB} --attacks fgsm --step-size 0.01",
      "no attack of --attacks fgsm takes --step-size"),
    C("attack", "--restarts", f"{WB} --restarts 0", "--restarts: expected an integer >= 1, got '0'"),
    C("attack", "--restarts", f"{WB} --restarts x", "--restarts: expected an integer >= 1, got 'x'"),
    C("attack", "--restarts", f"{WB} --restarts 2", "no attack of --attacks fgsm,ifgsm takes --restarts"),
    C("attack", "--queries", f"{WB} --queries 0", "--queries: expected an integer >= 1, got '0'"),
    C("attack", "--queries", f"{WB} --queries=-5", "--queries: expected an integer >= 1, got '-5'"),
    C("attack", "--queries", f"{WB} --queries 10", "no attack of --attacks fgsm,ifgsm takes --queries"),
    C("attack", "--targets", f"{WB} --targets 0", "--targets: expected an integer >= 1, got '0'"),
    C("attack", "--targets", f"{WB} --targets x", "--targets: expected an integer >= 1, got 'x'"),
    C("attack", "--targets", f"{WB} --targets 3", "no attack of --attacks fgsm,ifgsm takes --targets"),
    C("attack", "--targets", f"{WB} --attacks apgd-t --targets 10", "--targets 10 is more than the 9 classes"),
    C("attack", "--attack-seed", f"{WB} --attack-seed=-1", "--attack-seed: expected an integer >= 0, got '-1'"),
    C("attack", "--attack-seed", f"{WB} --attack-seed 1.5", "--attack-seed: expected an integer >= 0, got '1.5'"),
    C("attack", "--num-samples", f"{WB} --num-samples=-1", "--num-samples: expected an integer >= 0, got '-1'"),
    C("attack", "--num-samples", f"{WB} --num-samples x", "--num-samples: expected an integer >= 0, got 'x'"),
    C("attack", "--num-samples", f"{WB} --num-samples 1000", "--num-samples 1000 is more than the 360 test images"),
    C("attack", "--batch-size", f"{WB} --batch-size 0", "--batch-size: expected an integer >= 1, got '0'"),
    C("attack", "--batch-size", f"{WB} --batch-size=-1", "--batch-size: expected an integer >= 1, got '-1'"),
    C("attack", "--batch-size", f"{WB} --batch-size x", "--batch-size: expected an integer >= 1, got 'x'"),
    C("attack", "--results-dir", f"{WB} --results-dir {{file}}", "--results-dir: expected a folder, got the file"),
    C("attack", "--results-dir", f"{WB} --results-dir {{ro}}/results", "--results-dir: cannot write into"),
    C("attack", "--zoo-dir", f"{WB} --zoo-dir {{file}}", "--zoo-dir: expected a folder, got the file"),
    C("attack", "--zoo-dir", f"{WB} --zoo-dir {{missing}}", "the digits zoo in"),
    C("attack", "--data-root", f"{WB} --data-root {{file}}", "--data-root: expected a folder, got the file"),
    C("attack", "--device", f"{WB} --device tpu", "unknown device 'tpu'; valid: auto, cpu, cuda"),
    C("attack", "--precision", f"{WB} --precision fp16", "--precision: invalid choice: 'fp16'"),
    # --- experiment
    C("experiment", "experiment", "nope --dataset digits", "argument experiment: invalid choice: 'nope'"),
    C("experiment", "--dataset", "noise --dataset nope", "unknown dataset 'nope'; valid: "),
    C("experiment", "--preset", "noise --dataset digits --preset huge", "unknown preset 'huge'; valid: paper, quick"),
    C("experiment", "--members", "noise --dataset digits --members nope", "unknown member 'nope'; valid: "),
    C("experiment", "--members", "noise --dataset digits --members=",
      "--members: expected comma-separated names, got ''"),
    C("experiment", "--results-dir", "noise --dataset digits --results-dir {file}",
      "--results-dir: expected a folder, got the file"),
    C("experiment", "--results-dir", "noise --dataset digits --results-dir {ro}", "--results-dir: cannot write into"),
    C("experiment", "--zoo-dir", "noise --dataset digits --zoo-dir {file}",
      "--zoo-dir: expected a folder, got the file"),
    C("experiment", "--zoo-dir", "noise --dataset digits --zoo-dir {ro}", "--zoo-dir: cannot write into"),
    C("experiment", "--zoo-dir", "generalization --dataset digits --zoo-dir {defs}", "member 'ce-s0' is defined twice",
      toml=DEFS + '[[members]]\nloss = "ce"\n'),
    C("experiment", "--zoo-dir", "noise --dataset digits --zoo-dir {defs}",
      f"margin delta must be {DELTA_RANGE}, got 1.797e+308", toml=DEFS.replace('"ce"', '"hinge"') + "delta = 1.797e308\n"),
    C("experiment", "--data-root", "noise --dataset digits --data-root {file}",
      "--data-root: expected a folder, got the file"),
    C("experiment", "--device", "noise --dataset digits --device tpu", "unknown device 'tpu'; valid: auto, cpu, cuda"),
    C("experiment", "--precision", "noise --dataset digits --precision fp16", "--precision: invalid choice: 'fp16'"),
    # --- report ({store}: a results folder with one white-box fgsm run of n = 100 images)
    C("report", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("report", "--results-dir", "--dataset digits --results-dir {file}",
      "--results-dir: expected a folder, got the file"),
    C("report", "--results-dir", "--dataset digits --results-dir {missing}", "--results-dir: no folder"),
    C("report", "--out", f"{RP} --out {{file}}", "--out: expected a folder, got the file"),
    C("report", "--out", f"{RP} --out {{ro}}", "--out: cannot write into"),
    C("report", "--zoo-dir", f"{RP} --zoo-dir {{file}}", "--zoo-dir: expected a folder, got the file"),
    C("report", "--data-root", f"{RP} --data-root {{file}}", "--data-root: expected a folder, got the file"),
    C("report", "--matrix-eps", f"{RP} --matrix-eps nan", "--matrix-eps: expected a finite number >= 0"),
    C("report", "--matrix-eps", f"{RP} --matrix-eps=-0.1", "got '-0.1'"),
    C("report", "--matrix-eps", f"{RP} --matrix-eps inf", "got 'inf'"),
    C("report", "--matrix-eps", f"{RP} --matrix-eps x", "got 'x'"),
    C("report", "--matrix-eps", f"{RP} --matrix-eps 1/0", "got '1/0'"),
    C("report", "--run-id", f"{RP} --run-id nope", "no attack records of run 'nope' here; runs with attack records: "),
    C("report", "--run-id", "--dataset digits --run-id nope", "no attack records of run 'nope' here; runs with attack "
      "records: none"),
    C("report", "--attack-loss", f"{RP} --attack-loss nope", "unknown attack loss 'nope'; valid: ce, cw"),
    C("report", "--attack-loss", f"{RP} --attack-loss cw",
      "--attack-loss 'cw' matches no stored attack record; stored: ce"),
    C("report", "--backend", f"{RP} --backend nope", "unknown attack backend 'nope'; valid: native, torchattacks, art"),
    C("report", "--backend", f"{RP} --backend art", "--backend 'art' matches no stored attack record; stored: native"),
    C("report", "--schedule", f"{RP} --schedule nope",
      "--schedule 'nope' matches no stored attack record; stored: default"),
    C("report", "--precision", f"{RP} --precision fp16", "--precision: invalid choice: 'fp16'"),
    C("report", "--precision", f"{RP} --precision bf16",
      "--precision 'bf16' matches no stored attack record; stored: fp32"),
    C("report", "--num-samples", f"{RP} --num-samples 0", "--num-samples: expected an integer >= 1, got '0'"),
    C("report", "--num-samples", f"{RP} --num-samples 7",
      "--num-samples 7 matches no stored attack record; stored: 100"),
    # --- results export / migrate / runs
    C("results export", "--dataset", "", "give the results folder with --results-dir DIR or --dataset D"),
    C("results export", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("results export", "--dataset", "--dataset nope --results-dir {store}", "unknown dataset 'nope'; valid: "),
    C("results export", "--results-dir", "--results-dir {missing}", "--results-dir: no folder"),
    C("results export", "--results-dir", "--results-dir {file}", "--results-dir: expected a folder, got the file"),
    C("results export", "--results-dir", "--results-dir .", "no result store in ."),
    C("results export", "--format", "--results-dir {store} --format xml", "--format: invalid choice: 'xml'"),
    C("results export", "--out", "--results-dir {store} --out {file}", "--out: expected a folder, got the file"),
    C("results export", "--out", "--results-dir {store} --out {ro}", "--out: cannot write into"),
    C("results migrate", "dir", "{missing}", "is not a folder; give the results folder"),
    C("results migrate", "dir", "{file}", "is not a folder; give the results folder"),
    C("results migrate", "dir", "", "the following arguments are required: dir"),
    C("results runs", "--dataset", "", "give the results folder with --results-dir DIR or --dataset D"),
    C("results runs", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("results runs", "--results-dir", "--results-dir {missing}", "--results-dir: no folder"),
    C("results runs", "--results-dir", "--results-dir {file}", "--results-dir: expected a folder, got the file"),
    C("results verify", "--dataset", "", "the following arguments are required: --dataset"),
    C("results verify", "--dataset", "--dataset nope", "unknown dataset 'nope'; valid: "),
    C("results verify", "--results-dir", "--dataset digits --results-dir {missing}", "--results-dir: no folder"),
    C("results verify", "--report", "--dataset digits --results-dir {store} --report {missing}", "--report: no folder"),
    C("results verify", "--report", "--dataset digits --results-dir {store} --report {store}",
      "holds no provenance.json: not a report of this robench"),
    C("results verify", "--zoo-dir", "--dataset digits --zoo-dir {file}", "--zoo-dir: expected a folder, got the file"),
    C("results verify", "--data-root", "--dataset digits --data-root {file}",
      "--data-root: expected a folder, got the file"),
    # --- bounds (robench.bounds), link loops, long names and long values, per command
    C("attack", "--steps", f"{WB} --steps {HUGE}", f"--steps: {HUGE} is above the bound 10,000"),
    C("attack", "--steps", f"{WB} --steps {DIGITS_5000}", "--steps: an integer of 5,000 digits is above the bound"),
    C("attack", "--restarts", f"{WB} --attacks pgd --restarts {HUGE}", f"--restarts: {HUGE} is above the bound 100"),
    C("attack", "--queries", f"{WB} --attacks square --queries {HUGE}",
      f"--queries: {HUGE} is above the bound 100,000"),
    C("attack", "--targets", f"{WB} --attacks apgd-t --targets 1000", "--targets: 1000 is above the bound 999"),
    C("attack", "--attack-seed", f"{WB} --attack-seed 4294967296",
      "--attack-seed: 4294967296 is above the bound 4,294,967,295"),
    C("attack", "--num-samples", f"{WB} --num-samples 50001", "--num-samples: 50001 is above the bound 50,000"),
    C("attack", "--batch-size", f"{WB} --batch-size 100001", "--batch-size: 100001 is above the bound 100,000"),
    C("attack", "--eps", f"{WB} --eps {EPS_101}", "--eps 101 values is above the bound of 100 values"),
    C("attack", "--eps", f"{WB} --eps {LONG_VALUE}", ("epsilon 'xxx", "... (100,000 characters) is not a number")),
    C("attack", "--defenders", f"{WB} --defenders {NAMES_1001}",
      "--defenders: 1,001 names is above the bound of 1,000 names"),
    C("attack", "--attacks", f"{WB} --attacks {NAMES_1001}", "--attacks: 1,001 names is above the bound of 1,000"),
    C("attack", "--attacks", f"{WB} --attacks {LONG_VALUE}", ("unknown attack 'xxx", "more characters)", "valid: ")),
    C("attack", "--attacker", f"{BB} --zoo-dir {{zoo}} --attacker {LONG_VALUE}",
      ("unknown attacker 'xxx", "more characters)")),
    C("attack", "--zoo-dir", f"{WB} --zoo-dir {{loop}}", f"--zoo-dir: 'loop' {LOOP}"),
    C("attack", "--zoo-dir", f"{WB} --zoo-dir {LONG_NAME}", f"--zoo-dir: {TOO_LONG}"),
    C("attack", "--results-dir", f"{WB} --results-dir {{loop}}", f"--results-dir: 'loop' {LOOP}"),
    C("attack", "--results-dir", WB, f"the default --results-dir reports/digits/results: "
      f"'reports/digits/results' {LOOP}", loop="reports"),
    C("attack", "--data-root", f"{WB} --data-root {{loop}}/x", f"--data-root: 'loop/x' {LOOP}"),
    C("train zoo", "--seeds", f"--dataset digits --seeds {SEEDS_1001}", "--seeds: 1,001 seeds is above the bound"),
    C("train zoo", "--seeds", "--dataset digits --seeds 0,4294967296",
      "--seeds: seed 4294967296 is above the bound 4,294,967,295"),
    C("train zoo", "--members", f"--dataset digits --members {NAMES_1001}", "--members: 1,001 names is above"),
    C("train zoo", "--zoo-dir", "--dataset digits", f"--zoo-dir: 'zoo' {LOOP}", loop="zoo"),
    C("train zoo", "--zoo-dir", f"--dataset digits --zoo-dir {LONG_NAME}/zoo", f"--zoo-dir: {TOO_LONG}"),
    C("train zoo", "--data-root", "--dataset digits", f"--data-root: 'data' {LOOP}", loop="data"),
    C("run", "--num-samples", f"--num-samples {HUGE}", f"--num-samples: {HUGE} is above the bound 50,000"),
    C("run", "--num-samples", "--num-samples 1000", "--num-samples 1000 is more than the 360 test images of digits"),
    C("run", "--zoo-dir", "--zoo-dir {loop}", f"--zoo-dir: 'loop' {LOOP}"),
    C("run", "--reports-dir", "", f"--reports-dir: 'reports' {LOOP}", loop="reports"),
    C("run", "--dataset", f"--dataset {LONG_VALUE}", ("unknown dataset 'xxx", "more characters)")),
    C("experiment", "--members", f"noise --dataset digits --members {NAMES_1001}", "--members: 1,001 names is above"),
    C("experiment", "--results-dir", "noise --dataset digits", "the default --results-dir reports/digits/results",
      loop="reports"),
    C("zoo list", "--zoo-dir", "--zoo-dir {loop}", f"--zoo-dir: 'loop' {LOOP}"),
    C("report", "--num-samples", f"{RP} --num-samples 50001", "--num-samples: 50001 is above the bound 50,000"),
    C("report", "--out", f"{RP} --out {{loop}}", f"--out: 'loop' {LOOP}"),
    C("report", "--out", RP, f"the default --out reports/digits: 'reports/digits' {LOOP}", loop="reports"),
    C("results export", "--out", "--results-dir {store} --out {loop}", f"--out: 'loop' {LOOP}"),
    C("data", "--data-root", "list --data-root {loop}", f"--data-root: 'loop' {LOOP}"),
    # --- data
    C("data", "action", "nope", "argument action: invalid choice: 'nope'"),
    C("data", "--data-root", "list --data-root {file}", "--data-root: expected a folder, got the file"),
]

#: Options that take no value a user could get wrong, each with the reason.
NO_BAD_VALUE = {
    "--help": "prints the help and exits 0 (tests/test_cli.py::test_every_command_has_help)",
    "--verbose": "a flag: on or off, nothing to get wrong",
    "--force": "a flag: on or off, nothing to get wrong",
    "--compile": "a flag: on or off, nothing to get wrong",
    "--download": "a flag: on or off, nothing to get wrong",
}

#: Bad inputs tried per command (quoted in the issue's note: "0 tracebacks").
CASES_PER_COMMAND: dict[str, int] = dict(Counter(c.command or "robench" for c in CASES))


# ------------------------------------------------------------ the parser walk

def _options(parser: argparse.ArgumentParser, command: tuple[str, ...] = ()):
    """(command, option or positional) of every argument of every (sub)parser."""
    for action in parser._actions:
        key = action.option_strings[-1] if action.option_strings else action.dest
        yield " ".join(command), key
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, command + (name,))


def test_every_option_has_a_bad_input_case():
    covered = {(c.command, c.option) for c in CASES}
    missing = sorted({(cmd, key) for cmd, key in _options(build_parser())
                      if key not in NO_BAD_VALUE and (cmd, key) not in covered})
    assert not missing, f"options without a bad-input case: {missing}"
    unknown = sorted({(c.command, c.option) for c in CASES} - set(_options(build_parser())))
    assert not unknown, f"cases about options the parser does not have: {unknown}"


def test_every_command_has_cases():
    leaves = {cmd for cmd, key in _options(build_parser())}
    assert {c or "robench" for c in leaves} == set(CASES_PER_COMMAND)


# ------------------------------------------------------------ running one case

def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots``: (kind, size, mtime) of files, kind of folders."""
    state = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            info = path.lstat()
            is_dir = stat.S_ISDIR(info.st_mode)
            state[str(path)] = ("dir",) if is_dir else ("file", info.st_size, info.st_mtime_ns)
    return state


def _stored_run(results_dir: Path) -> None:
    """A store holding one white-box fgsm run (n = 100, fp32, ce, native, default schedule)."""
    from factories import attack_record, store_in_runs
    from robench.store import ResultStore, RunRecord

    with ResultStore(results_dir) as store:
        store_in_runs(store, [attack_record()])


def _reached(what: str):
    def stop(*args, **kwargs):
        raise AssertionError(f"bad input reached {what}: it was not refused first")

    return stop


@pytest.fixture(scope="module")
def untrained_zoo(tmp_path_factory) -> Path:
    """A digits zoo of ce-s0 (defender) and ce-s100 (attacker) with untrained weights:
    the member names the attack's checks read, without training a zoo."""
    from robench.config import LossSpec, to_dict
    from robench.models import create_model
    from robench.zoo import member_dir, save_member

    zoo_dir = tmp_path_factory.mktemp("untrained-zoo")
    for seed, role in ((0, "defender"), (100, "attacker")):
        card = {"name": f"ce-s{seed}", "dataset": "digits", "architecture": "digits-cnn", "num_classes": 10,
                "head": "linear", "mean": [0.3], "std": [0.4], "loss": to_dict(LossSpec("ce")), "seed": seed,
                "role": role}
        model = create_model(card["architecture"], 10, card["head"], (0.3,), (0.4,))
        save_member(member_dir(zoo_dir, "digits", card["name"]), model, card)
    return zoo_dir


@pytest.fixture
def zoo(case, request) -> str:
    """The untrained zoo when the case names it (made before :func:`guarded`)."""
    return str(request.getfixturevalue("untrained_zoo")) if "{zoo}" in case.args else ""


@pytest.fixture
def guarded(zoo):
    """Training, attacking and report writing fail the test if a bad input reaches them.
    Each guard is its own patch, undone even if another's undo fails; main() gives the
    process settings it changes back by itself (robench.settings.preserved)."""
    import robench.evaluate.attack_runner as runner
    import robench.report.build as build
    import robench.train.members as members

    guards = [(members, "train_model", "training"), (runner, "_attack_cell_block", "an attack"),
              (build, "claims_section", "the report's sections")]
    with ExitStack() as undo:
        for module, name, what in guards:
            undo.enter_context(pytest.MonkeyPatch.context()).setattr(module, name, _reached(what))
        yield


def _workdir(case: Case, tmp_path: Path, zoo: str) -> dict[str, str]:
    """Make what the case's placeholders name; returns placeholder -> path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a-file").write_text("not a folder\n")
    paths = {"file": "a-file", "missing": "missing", "ro": "ro", "defs": "defs", "store": "store", "zoo": zoo,
             "loop": "loop"}
    for loop in ("loop", case.loop):
        if loop and ("{loop}" in case.args or loop == case.loop):
            (work / loop).parent.mkdir(parents=True, exist_ok=True)
            (work / loop).symlink_to(Path(loop).name)
    if "{ro}" in case.args:
        _unwritable_folder(work / "ro")
    if case.toml is not None:
        (work / "defs").mkdir()
        (work / "defs" / "digits.toml").write_text(case.toml)
    if "{store}" in case.args:
        _stored_run(work / "store")
    return paths


def _unwritable_folder(folder: Path) -> None:
    """A folder this process cannot write into: mode 0o500, and for root (whom
    permissions do not stop) a read-only tmpfs mounted on it, which stops root too."""
    folder.mkdir(mode=0o500)
    if not os.access(folder, os.W_OK):
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0 or os.access(folder, os.W_OK):
        pytest.skip(f"uid {os.geteuid()} writes into any folder whatever its permissions, and cannot mount a "
                    f"read-only tmpfs here ({mounted.stderr.strip()})")


def _release(folder: Path) -> None:
    """Undo :func:`_unwritable_folder`."""
    if folder.is_mount():
        subprocess.run(["umount", "-l", str(folder)], check=False)
    if folder.exists():
        folder.chmod(0o700)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, zoo, guarded, tmp_path, monkeypatch, capsys):
    paths = _workdir(case, tmp_path, zoo)
    monkeypatch.chdir(tmp_path / "work")
    argv = [a.format(**paths) for a in case.argv]
    roots = [tmp_path] + ([Path(paths["zoo"])] if paths["zoo"] else [])
    before = _snapshot(*roots)
    try:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    finally:
        _release(tmp_path / "work" / "ro")
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    assert len(lines[0]) < 1000, f"the line echoes a value whole: {lines[0][:300]}..."
    assert all(part in lines[0] for part in case.expected), lines[0]
    assert out == "", out
    assert _snapshot(*roots) == before, "the bad input wrote something"


# ------------------------------------------------------------ what a terminal cannot show

def _ascii_only_streams(monkeypatch) -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    """stdout and stderr as under ``PYTHONIOENCODING=ascii:strict``: a character outside
    ASCII written plainly raises UnicodeEncodeError."""
    streams = tuple(io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict") for _ in range(2))
    monkeypatch.setattr(sys, "stdout", streams[0])
    monkeypatch.setattr(sys, "stderr", streams[1])
    return streams


def _written(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode("ascii")


def test_a_non_ascii_path_on_an_ascii_terminal_gives_one_escaped_line(tmp_path, monkeypatch):
    """An error naming a non-ASCII path, on streams that only take ASCII: one line with
    the path's characters as backslash escapes, exit 2, no UnicodeEncodeError."""
    (tmp_path / "zöo").write_text("a file, not a folder\n")
    out, err = _ascii_only_streams(monkeypatch)
    with pytest.raises(SystemExit) as exited:
        main(["zoo", "list", "--zoo-dir", str(tmp_path / "zöo")])
    assert exited.value.code == 2
    lines = _written(err).splitlines()
    assert len(lines) == 1 and "expected a folder, got the file" in lines[0] and "z\\xf6o" in lines[0], lines
    assert _written(out) == ""


def test_output_naming_a_non_ascii_path_on_an_ascii_terminal_is_escaped(tmp_path, monkeypatch):
    """A command that succeeds and prints a non-ASCII path on an ASCII-only stdout."""
    (tmp_path / "zöo").mkdir()
    out, err = _ascii_only_streams(monkeypatch)
    assert main(["zoo", "list", "--zoo-dir", str(tmp_path / "zöo")]) == 0
    assert _written(out) == f"no trained members under {tmp_path}/z\\xf6o\n"
    assert _written(err) == ""


def test_an_error_line_escapes_control_characters_and_cuts_long_values():
    """robench.errors.one_line_message, which every error line goes through: a newline in a
    file name stays one line, a pasted value is cut to QUOTE_LIMIT characters."""
    from robench.errors import QUOTE_LIMIT, one_line_message

    line = one_line_message(f"zoo/a\nb.toml: not valid; got {'x' * 100_000} and more")
    assert "\n" not in line and "zoo/a\\nb.toml" in line
    assert f"{'x' * QUOTE_LIMIT}...({100_000 - QUOTE_LIMIT:,} more characters) and more" in line
    assert len(line) < 2 * QUOTE_LIMIT
