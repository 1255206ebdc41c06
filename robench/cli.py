"""The ``robench`` command line: parse, seed, call one public function per command.

Exit codes: 0 success, 2 user error (one line on stderr), 130 Ctrl-C and 143 SIGTERM (one
line each, every finished result kept), 1 a bug (traceback). Nothing heavy (torch) is
imported before :func:`main` is running, so a Ctrl-C during start-up is one line too.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import stat
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence, TextIO

from robench.bounds import (MAX_BATCH_SIZE, MAX_EPS_VALUES, MAX_NAMES, MAX_QUERIES, MAX_RESTARTS, MAX_SAMPLES,
                            MAX_SEED, MAX_SEEDS, MAX_STEPS, MAX_TARGETS, above_bound, shown_count)
from robench.errors import DiskFull, UserError, one_line_message, quoted
from robench.interrupts import Terminated, exit_code, sigterm_as_interrupt
from robench.io import NO_SPACE

log = logging.getLogger("robench")

#: Path errors a user causes (a symbolic-link loop, a name too long): one line, exit 2.
PATH_ERRNOS = (errno.ELOOP, errno.ENAMETOOLONG)
#: Bytes of one path component (NAME_MAX of Linux's and macOS's file systems) and of a
#: whole path (PATH_MAX, with its terminating NUL).
NAME_MAX, PATH_MAX = 255, 4096


def _names(value: str) -> list[str]:
    """An argparse type: comma-separated names, at least one and at most
    :data:`~robench.bounds.MAX_NAMES`; a name given twice counts once."""
    names = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {quoted(value)}")
    if len(names) > MAX_NAMES:
        raise argparse.ArgumentTypeError(above_bound("", f"{len(names):,}", MAX_NAMES, "names"))
    return names


def _seed_list(value: str) -> list[int]:
    """An argparse type: comma-separated seeds, integers from 0 to :data:`~robench.bounds.MAX_SEED`,
    at least one and at most :data:`~robench.bounds.MAX_SEEDS`."""
    parts = [v.strip() for v in value.split(",") if v.strip()]
    if not parts or not all(v.isdecimal() for v in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {quoted(value)}")
    if len(parts) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(above_bound("", f"{len(parts):,}", MAX_SEEDS, "seeds"))
    too_large = next((v for v in parts if len(v) > len(str(MAX_SEED)) or int(v) > MAX_SEED), None)
    if too_large is not None:
        raise argparse.ArgumentTypeError(above_bound("seed", _shown_integer(too_large), MAX_SEED))
    return [int(v) for v in parts]


def _path_problem(value: str) -> str | None:
    """Why ``value`` cannot be a folder robench uses, found before any work: a name longer
    than a file system allows, a symbolic-link loop or a link to nothing, a file where a
    folder should be, a folder that cannot be searched. None when it is a folder or does
    not exist yet (it may be created)."""
    encoded = os.fsencode(value)
    long = next((part for part in Path(value).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is not None:
        return (f"a name in the path is {len(os.fsencode(long)):,} bytes long, above the {NAME_MAX} a file system "
                f"allows: {quoted(long, 60)}; give a shorter path")
    if len(encoded) >= PATH_MAX:
        return (f"the path is {len(encoded):,} bytes long, above the {PATH_MAX - 1:,} a path may have; "
                "give a shorter one")
    try:
        mode = os.stat(value).st_mode
    except FileNotFoundError:
        if os.path.islink(value):
            return f"{quoted(value)} is a symbolic link to {quoted(os.readlink(value))}, which does not exist"
        return None
    except NotADirectoryError:
        in_the_way = next((p for p in reversed(Path(value).parents) if p.exists() and not p.is_dir()), value)
        return f"cannot create folder {quoted(value)}: {quoted(str(in_the_way))} is a file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{quoted(value)} is a loop of symbolic links (ELOOP); give a real folder"
        return f"{quoted(value)} cannot be used ({exc.strerror})"
    return None if stat.S_ISDIR(mode) else f"expected a folder, got the file {quoted(value)}"


def _folder(value: str) -> Path:
    """An argparse type: a folder path; where it exists, a folder (not a file, not a link
    loop), and a path the file system can hold (:func:`_path_problem`)."""
    problem = _path_problem(value) if value else f"expected a folder, got {quoted(value)}"
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(value)


def _existing_folder(value: str) -> Path:
    """An argparse type: a folder that exists."""
    path = _folder(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {quoted(value)}; give an existing folder")
    return path


def _output_folder(value: str) -> Path:
    """An argparse type: a folder robench can write into, or create inside one."""
    path = _folder(value)
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create folder {quoted(value)}: {quoted(str(parent))} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {quoted(str(parent))} (permission denied); "
                                         "give a folder you can write to")
    return path


def _write(stream: TextIO, text: str) -> None:
    """``text`` on ``stream``, each character its encoding cannot hold (a non-ASCII path
    under ``PYTHONIOENCODING=ascii``, a file name's undecodable byte) as a backslash escape
    instead of a UnicodeEncodeError."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # an encoding Python does not know: plain ASCII then
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    stream.write(text)


def _emit(text: str) -> None:
    _write(sys.stdout, text + "\n")


def _error_line(text: str) -> None:
    """``text`` as the one line on stderr (:func:`robench.errors.one_line_message`)."""
    _write(sys.stderr, one_line_message(text) + "\n")


def _common(p: argparse.ArgumentParser, dataset_required: bool = True, writes_zoo: bool = False) -> None:
    if dataset_required:
        p.add_argument("--dataset", required=True, help="dataset name (see `robench data list`)")
    p.add_argument("--zoo-dir", type=_output_folder if writes_zoo else _folder, default="zoo",
                   help="zoo folder (default ./zoo)")
    p.add_argument("--data-root", type=_folder, default="data", help="dataset folder (default ./data)")


def _device_options(p: argparse.ArgumentParser, training: bool = True) -> None:
    from robench.device import PRECISION_CHOICES

    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                   help="auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16")
    if training:
        p.add_argument("--compile", action="store_true",
                       help="train through torch.compile (faster steps on CUDA after a compilation)")


# --- commands -------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> None:
    from robench.pipeline import run_pipeline

    index = run_pipeline(args.dataset, args.preset, args.zoo_dir, args.data_root, args.reports_dir, args.device,
                         args.num_samples)
    _emit(f"report: {index}")


def cmd_train_zoo(args: argparse.Namespace) -> None:
    from robench.train.members import train_zoo
    from robench.zoo_table import format_zoo_table

    cards = train_zoo(args.dataset, args.preset, args.members, args.seeds, args.zoo_dir,
                      args.device, args.data_root, args.download, args.force)
    _emit(format_zoo_table(cards))


def _known_dataset(name: str) -> None:
    """A UserError listing the registered datasets unless ``name`` is one."""
    from robench.data import DATASETS

    DATASETS.get(name)


def cmd_zoo_list(args: argparse.Namespace) -> None:
    from robench.zoo import list_members
    from robench.zoo_table import format_zoo_table

    if args.dataset:
        _known_dataset(args.dataset)
    cards = list_members(args.zoo_dir, args.dataset)
    _emit(format_zoo_table(cards) if cards else f"no trained members under {args.zoo_dir}")


def cmd_zoo_migrate(args: argparse.Namespace) -> None:
    from robench.zoo_migrate import migrate_zoo

    for line in migrate_zoo(args.zoo_dir, args.results_dir):
        _emit(line)


def cmd_data(args: argparse.Namespace) -> None:
    from robench.data import data_status

    rows = data_status(args.data_root)
    for row in rows:
        state = "present" if row["present"] else "missing: " + ", ".join(map(str, row["missing"]))
        _emit(f"{row['name']:<14} {state}")
    if args.action == "check":
        missing = [r["name"] for r in rows if not r["present"]]
        if missing:
            raise UserError(f"datasets missing under {args.data_root}: {', '.join(missing)}")


def cmd_attack(args: argparse.Namespace) -> None:
    from robench.evaluate.attack_runner import AttackPlan, parse_eps, run_attacks
    from robench.evaluate.tables import format_accuracy_table
    from robench.evaluate.validity import summarize_flags

    plan = AttackPlan(
        mode="whitebox" if args.whitebox else "blackbox",
        attacks=args.attacks,
        eps=parse_eps(args.eps) if args.eps is not None else None,
        attacker=args.attacker,
        defenders=args.defenders,
        attack_loss=args.attack_loss,
        backend=args.backend,
        steps=args.steps,
        step_size=args.step_size,
        restarts=args.restarts,
        queries=args.queries,
        targets=args.targets,
        attack_seed=args.attack_seed,
        num_samples=args.num_samples,
        chunk_size=args.batch_size,
        force=args.force,
    )
    records, flags = run_attacks(args.dataset, plan, args.zoo_dir, args.results_dir, args.device, args.data_root)
    _emit(format_accuracy_table(records) if records else "every cell was already computed (use --force to redo)")
    _emit("\nvalidity flags:\n" + summarize_flags(flags))


def cmd_experiment(args: argparse.Namespace) -> None:
    from robench.experiments import format_summary, run_generalization, run_noise, summarize

    run = run_generalization if args.experiment == "generalization" else run_noise
    rows = run(args.dataset, args.preset, args.members, args.zoo_dir, args.results_dir,
               args.device, args.data_root, args.force)
    _emit(format_summary(summarize(rows)))


def cmd_report(args: argparse.Namespace) -> None:
    from robench.evaluate.evaluation import Evaluation
    from robench.report import write_report

    results_dir = _results_dir(args)  # checks the dataset too
    out = args.out or Path("reports") / args.dataset
    evaluation = Evaluation(args.run_id, args.attack_loss, args.backend, args.schedule, args.eval_precision,
                            args.num_samples)
    index = write_report(args.dataset, results_dir, args.zoo_dir, out, args.matrix_eps, args.data_root,
                         evaluation=evaluation)
    _emit(str(index))


def _results_dir(args: argparse.Namespace) -> Path:
    """``--results-dir``, else ``reports/<--dataset>/results``."""
    if args.dataset:
        _known_dataset(args.dataset)
    if args.results_dir:
        return args.results_dir
    if not args.dataset:
        raise UserError("give the results folder with --results-dir DIR or --dataset D (reports/D/results)")
    return Path("reports") / args.dataset / "results"


def cmd_results_export(args: argparse.Namespace) -> None:
    from robench.store import ResultStore
    from robench.store.export import export_results

    results_dir = _results_dir(args)
    with ResultStore(results_dir) as store:
        if not store.exists:
            raise UserError(f"no result store in {results_dir} (no {store.path.name}); run robench attack or "
                            "robench experiment first, or migrate older CSVs with robench results migrate")
        for path in export_results(store, args.out or results_dir, args.format):
            _emit(str(path))


def cmd_results_migrate(args: argparse.Namespace) -> None:
    from robench.store.migrate import migrate

    for line in migrate(args.dir):
        _emit(line)


def cmd_results_verify(args: argparse.Namespace) -> None:
    from robench.report.verify import verify_report

    results_dir = _results_dir(args)
    for line in verify_report(args.dataset, args.report or Path("reports") / args.dataset, results_dir, args.zoo_dir,
                              args.data_root):
        _emit(line)


def cmd_results_runs(args: argparse.Namespace) -> None:
    from robench.store import ResultStore, RunRecord

    with ResultStore(_results_dir(args)) as store:
        runs = store.frame(RunRecord)
    if runs.empty:
        _emit("no stored runs")
    for run in runs.itertuples():
        _emit(f"{run.run_id}  {run.kind:<10} {run.created}  {run.config}")


def _int_at_least(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``minimum`` to ``maximum``, its bound
    (:mod:`robench.bounds`); one past the bound is named as such."""

    def parse(value: str) -> int:
        digits = value.strip().removeprefix("+")
        if digits.isdecimal() and len(digits) > len(str(maximum)) + 1:  # no int() of 10**5 digits
            raise argparse.ArgumentTypeError(above_bound("", _shown_integer(digits), maximum))
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {quoted(value)}")
        if number > maximum:
            raise argparse.ArgumentTypeError(above_bound("", shown_count(number), maximum))
        return number

    return parse


def _shown_integer(digits: str) -> str:
    """A string of decimal digits for a message: itself, or its length when long."""
    return digits if len(digits) <= 40 else f"an integer of {len(digits):,} digits"


def _fraction(value: str) -> float:
    """A number or a fraction like 8/255; NaN where it is neither."""
    num, _, den = value.partition("/")
    try:
        return float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return math.nan


def _matrix_eps(value: str) -> float:
    """``--matrix-eps``: a finite ε >= 0, or a fraction like 8/255."""
    number = _fraction(value)
    if not (math.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 like 0.1 or 8/255, got {quoted(value)}")
    return number


def _step_size(value: str) -> float:
    """``--step-size``: a number or a fraction like 1/255, in (0, 1] (pixels live in [0, 1])."""
    number = _fraction(value)
    if not 0 < number <= 1:  # False for NaN
        raise argparse.ArgumentTypeError(
            f"expected a step size in (0, 1] for pixels in [0, 1], like 0.004 or 1/255, got {quoted(value)}")
    return number


# --- parser ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (``robench attack: error: ...``), exit 2,
    quoting at most :data:`robench.errors.QUOTE_LIMIT` characters of a bad value, and help
    and errors written in whatever encoding the stream has (:func:`_write`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, one_line_message(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """argparse's own check, with the bad value quoted and cut (it echoes it whole)."""
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {quoted(value)} (choose from {choices})")

    def _print_message(self, message: str, file: TextIO | None = None) -> None:
        if message:
            _write(file or sys.stderr, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robench", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the whole pipeline: zoo, attacks, experiments, report (resumable)")
    _common(run, dataset_required=False, writes_zoo=True)
    run.add_argument("--dataset", default="digits", help="dataset name (default digits, built in)")
    run.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    run.add_argument("--reports-dir", type=_output_folder, default="reports", help="default ./reports")
    run.add_argument("--num-samples", type=_int_at_least(0, MAX_SAMPLES), default=0,
                     help=f"attack the first N test images only (default: all; at most {MAX_SAMPLES:,}, the "
                          "largest test set, and the dataset's own test images)")
    _device_options(run)
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="what", required=True)
    tz = train.add_parser("zoo", help="train a dataset's zoo (skips trained members, resumes killed ones)")
    _common(tz, writes_zoo=True)
    tz.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    tz.add_argument("--members", type=_names, help=f"comma-separated member or loss names (at most {MAX_NAMES:,})")
    tz.add_argument("--seeds", type=_seed_list,
                    help=f"comma-separated seeds (at most {MAX_SEEDS:,}, each from 0 to {MAX_SEED:,})")
    _device_options(tz)
    tz.add_argument("--download", action="store_true", help="download the dataset if missing")
    tz.add_argument("--force", action="store_true", help="retrain members that exist")
    tz.set_defaults(func=cmd_train_zoo)

    zoo = sub.add_parser("zoo", help="inspect the zoo").add_subparsers(dest="what", required=True)
    zl = zoo.add_parser("list", help="members, clean accuracy, hash")
    _common(zl, dataset_required=False)
    zl.add_argument("--dataset", help="only this dataset")
    zl.set_defaults(func=cmd_zoo_list)
    zm = zoo.add_parser("migrate", help="bind the cards of members saved before cards were bound to their weights, "
                                        "once (rewrites the weights' metadata and the hashes in the given stores)")
    zm.add_argument("--zoo-dir", type=_existing_folder, default=Path("zoo"), help="zoo folder (default ./zoo)")
    zm.add_argument("--results-dir", type=_existing_folder, action="append",
                    help="a results folder whose records' weight hashes are rewritten (repeatable)")
    zm.set_defaults(func=cmd_zoo_migrate)

    at = sub.add_parser("attack", help="ε sweeps of FGSM, IFGSM, PGD, APGD, Square and the worst case: white-box "
                                       "runs or attacker × defender matrices")
    mode = at.add_mutually_exclusive_group(required=True)
    mode.add_argument("--whitebox", action="store_true", help="each member attacks itself")
    mode.add_argument("--blackbox", action="store_true", help="transfer attacks from --attacker")
    _common(at)
    at.add_argument("--attacks", type=_names, default=["fgsm", "ifgsm"],
                    help="comma-separated (default fgsm,ifgsm, the paper's): fgsm, ifgsm, pgd, apgd-ce, apgd-dlr, "
                         "apgd-t, square; L2: fgm, pgd-l2, apgd-ce-l2, apgd-dlr-l2, apgd-t-l2; per-sample worst "
                         f"case: worst, aa, worst-l2 (white-box); at most {MAX_NAMES:,} names")
    at.add_argument("--eps", help=f"comma-separated ε (fractions like 8/255 allowed): in [0, 1] for L∞, at most "
                                  f"{MAX_EPS_VALUES} values; default: the dataset's grid of the attacks' norm")
    at.add_argument("--attacker", help="black-box attacker member, or 'all' for the full matrix (default: the ce member of the other seed)")
    at.add_argument("--defenders", type=_names,
                    help=f"comma-separated members (default: the whole zoo; at most {MAX_NAMES:,})")
    at.add_argument("--attack-loss", default="ce", help="ce | cw | model (default ce, the paper's)")
    at.add_argument("--backend", default="native", help="native | torchattacks | art")
    at.add_argument("--steps", type=_int_at_least(1, MAX_STEPS),
                    help="steps of IFGSM (default Kurakin's rule), PGD and APGD (default 100) and the ensembles' "
                         f"PGD/APGD; at most {MAX_STEPS:,}")
    at.add_argument("--step-size", type=_step_size,
                    help="step size of IFGSM (default 1/255) and PGD (default 2.5 ε / steps), e.g. 2/255")
    at.add_argument("--restarts", type=_int_at_least(1, MAX_RESTARTS),
                    help=f"restarts of PGD, APGD and Square (default 1; at most {MAX_RESTARTS})")
    at.add_argument("--queries", type=_int_at_least(1, MAX_QUERIES),
                    help=f"Square's query budget (default 5000; at most {MAX_QUERIES:,})")
    at.add_argument("--targets", type=_int_at_least(1, MAX_TARGETS),
                    help=f"APGD-T's target classes (default 9, at most K - 1 and {MAX_TARGETS})")
    at.add_argument("--attack-seed", type=_int_at_least(0, MAX_SEED),
                    help="seed of the random attacks (PGD, APGD, Square; default 0), recorded in each row; "
                         f"at most {MAX_SEED:,}")
    at.add_argument("--num-samples", type=_int_at_least(0, MAX_SAMPLES), default=0,
                    help=f"first N test samples (default: all; at most the test set and {MAX_SAMPLES:,})")
    at.add_argument("--batch-size", type=_int_at_least(1, MAX_BATCH_SIZE), default=0,
                    help=f"test samples attacked together (default 256 on CPU, 4096 on CUDA; at most "
                         f"{MAX_BATCH_SIZE:,})")
    at.add_argument("--results-dir", type=_output_folder, help="default reports/<dataset>/results")
    _device_options(at, training=False)
    at.add_argument("--force", action="store_true", help="recompute cells already stored")
    at.set_defaults(func=cmd_attack)

    ex = sub.add_parser("experiment", help="the paper's generalization or noisy-label experiment")
    ex.add_argument("experiment", choices=("generalization", "noise"))
    _common(ex, writes_zoo=True)
    ex.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    ex.add_argument("--members", type=_names,
                    help=f"comma-separated member or loss names (default: the zoo definition; at most {MAX_NAMES:,})")
    ex.add_argument("--results-dir", type=_output_folder, help="default reports/<dataset>/results")
    _device_options(ex)
    ex.add_argument("--force", action="store_true", help="recompute cells already stored")
    ex.set_defaults(func=cmd_experiment)

    rp = sub.add_parser("report", help="tables, figures, claims and flags as index.html and report.md")
    _common(rp)
    rp.add_argument("--results-dir", type=_existing_folder, help="default reports/<dataset>/results")
    rp.add_argument("--out", type=_output_folder, help="default reports/<dataset>")
    rp.add_argument("--matrix-eps", type=_matrix_eps, help="ε of the attacker × defender heatmap (default: mid-grid)")
    ev = rp.add_argument_group("evaluation", "which attack records the figures and claims read (default: the "
                               "protocol's: attack loss ce, backend native, schedule default)")
    ev.add_argument("--run-id", help="the records of one stored run (see `robench results runs`)")
    ev.add_argument("--attack-loss", help="ce | cw | model")
    ev.add_argument("--backend", help="native | torchattacks | art")
    ev.add_argument("--schedule", help="default, or a stored override label such as 'steps 20, step default'")
    ev.add_argument("--precision", dest="eval_precision", choices=("fp32", "bf16"),
                    help="when records of both are stored")
    ev.add_argument("--num-samples", type=_int_at_least(1, MAX_SAMPLES),
                    help=f"when records on several test image counts are stored (at most {MAX_SAMPLES:,})")
    rp.set_defaults(func=cmd_report)

    res = sub.add_parser("results", help="the result store: export, migrate, verify, runs").add_subparsers(
        dest="what", required=True)
    rx = res.add_parser("export", help="write the store's tables as CSV or Parquet (attacks, experiments, flags, runs)")
    rx.add_argument("--dataset", help="the store in reports/<dataset>/results")
    rx.add_argument("--results-dir", type=_existing_folder, help="the results folder holding results.sqlite")
    rx.add_argument("--format", default="csv", choices=("csv", "parquet"), help="default csv")
    rx.add_argument("--out", type=_output_folder, help="folder to write to (default: the results folder)")
    rx.set_defaults(func=cmd_results_export)
    rm = res.add_parser("migrate", help="turn the result CSVs of robench before the store into records, once")
    rm.add_argument("dir", type=Path, help="results folder, e.g. reports/digits/results")
    rm.set_defaults(func=cmd_results_migrate)
    rv = res.add_parser("verify", help="check a report against the records and cards it came from")
    _common(rv)
    rv.add_argument("--results-dir", type=_existing_folder, help="default reports/<dataset>/results")
    rv.add_argument("--report", type=_existing_folder, help="the report's folder (default reports/<dataset>)")
    rv.set_defaults(func=cmd_results_verify)
    rr = res.add_parser("runs", help="the stored run configurations (run ids for robench report --run-id)")
    rr.add_argument("--dataset", help="the store in reports/<dataset>/results")
    rr.add_argument("--results-dir", type=_existing_folder, help="the results folder holding results.sqlite")
    rr.set_defaults(func=cmd_results_runs)

    data = sub.add_parser("data", help="which datasets are present")
    data.add_argument("action", choices=("list", "check"))
    data.add_argument("--data-root", type=_folder, default="data")
    data.set_defaults(func=cmd_data)
    return parser


def _check_dataset_and_derived_folders(args: argparse.Namespace) -> None:
    """``--dataset`` is known, and the folders a command derives from it when not given
    (``--results-dir``: ``reports/<dataset>/results``; the report's ``--out``:
    ``reports/<dataset>``) pass the checks given ones do (:func:`_path_problem`), before
    any work: a link loop there is not found after training."""
    dataset = getattr(args, "dataset", None)
    if not dataset:
        return
    _known_dataset(dataset)
    derived = {"results_dir": Path("reports") / dataset / "results", "out": Path("reports") / dataset}
    for name, folder in derived.items():
        if getattr(args, name, "") is None and (name != "out" or args.func is cmd_report):
            problem = _path_problem(str(folder))
            if problem:
                raise UserError(f"the default --{name.replace('_', '-')} {folder}: {problem}")


def _run(argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its command; a user error as one line and exit 2."""
    from robench import settings
    from robench.device import set_compile_training, set_default_precision, use_ieee_fp32

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        _check_dataset_and_derived_folders(args)
        with settings.preserved():  # a caller in the same Python process gets its settings back
            use_ieee_fp32()
            set_default_precision(getattr(args, "precision", "auto"))
            set_compile_training(getattr(args, "compile", False))
            func(args)
    except UserError as exc:
        _error_line(f"robench: error: {exc}")
        return 2
    except (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError) as exc:
        _error_line(f"robench: error: {exc.strerror}: {exc.filename}; check the folder and file paths given")
        return 2
    except OSError as exc:
        if exc.errno in PATH_ERRNOS:  # a link loop or a name too long met past the up-front checks
            _error_line(f"robench: error: {exc.strerror}: {exc.filename}; check the folder and file paths given")
            return 2
        if exc.errno not in NO_SPACE:
            raise
        _error_line(f"robench: error: {DiskFull(exc.filename or 'a file', intact=False)}")  # not atomic_write
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robench`` console script: the exit code (see the module's
    docstring). Ctrl-C and SIGTERM, start-up (``import torch``) included, unwind through
    the command (stores roll back their open batch) and end as one line."""
    with sigterm_as_interrupt():
        try:
            return _run(argv)
        except KeyboardInterrupt as exc:  # robench.interrupts.Terminated too
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            _error_line(f"robench: {what}; every finished result is kept: re-run the same command to resume")
            return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
