"""The ``robench`` command line: parse, seed, call one public function per command.

Exit codes: 0 success, 2 user error (one line on stderr), 1 a bug (traceback).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from robench import settings
from robench.device import PRECISION_CHOICES, set_compile_training, set_default_precision, use_ieee_fp32
from robench.errors import DiskFull, UserError
from robench.io import NO_SPACE

log = logging.getLogger("robench")


def _csv(value: str) -> list[str]:
    """An argparse type: comma-separated names, at least one."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {value!r}")
    return names


def _int_list(value: str) -> list[int]:
    """An argparse type: comma-separated integers >= 0, at least one."""
    parts = [v.strip() for v in value.split(",") if v.strip()]
    numbers = [int(v) if v.isdecimal() else -1 for v in parts]
    if not numbers or min(numbers) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {value!r}")
    return numbers


def _folder(value: str) -> Path:
    """An argparse type: a folder path; where it exists, a folder (not a file)."""
    path = Path(value)
    if not value or (path.exists() and not path.is_dir()):
        what = "the file " if value else ""
        raise argparse.ArgumentTypeError(f"expected a folder, got {what}{value!r}")
    return path


def _existing_folder(value: str) -> Path:
    """An argparse type: a folder that exists."""
    path = _folder(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {value!r}; give an existing folder")
    return path


def _output_folder(value: str) -> Path:
    """An argparse type: a folder robench can write into, or create inside one."""
    path = _folder(value)
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create folder {value!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {str(parent)!r} (permission denied); "
                                         "give a folder you can write to")
    return path


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")


def _common(p: argparse.ArgumentParser, dataset_required: bool = True, writes_zoo: bool = False) -> None:
    if dataset_required:
        p.add_argument("--dataset", required=True, help="dataset name (see `robench data list`)")
    p.add_argument("--zoo-dir", type=_output_folder if writes_zoo else _folder, default=Path("zoo"),
                   help="zoo folder (default ./zoo)")
    p.add_argument("--data-root", type=_folder, default=Path("data"), help="dataset folder (default ./data)")


def _device_options(p: argparse.ArgumentParser, training: bool = True) -> None:
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


def cmd_results_runs(args: argparse.Namespace) -> None:
    from robench.store import ResultStore, RunRecord

    with ResultStore(_results_dir(args)) as store:
        runs = store.frame(RunRecord)
    if runs.empty:
        _emit("no stored runs")
    for run in runs.itertuples():
        _emit(f"{run.run_id}  {run.kind:<10} {run.created}  {run.config}")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``minimum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return parse


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
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 like 0.1 or 8/255, got {value!r}")
    return number


def _step_size(value: str) -> float:
    """``--step-size``: a number or a fraction like 1/255, in (0, 1] (pixels live in [0, 1])."""
    number = _fraction(value)
    if not 0 < number <= 1:  # False for NaN
        raise argparse.ArgumentTypeError(
            f"expected a step size in (0, 1] for pixels in [0, 1], like 0.004 or 1/255, got {value!r}")
    return number


# --- parser ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (``robench attack: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robench", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the whole pipeline: zoo, attacks, experiments, report (resumable)")
    _common(run, dataset_required=False, writes_zoo=True)
    run.add_argument("--dataset", default="digits", help="dataset name (default digits, built in)")
    run.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    run.add_argument("--reports-dir", type=_output_folder, default=Path("reports"), help="default ./reports")
    run.add_argument("--num-samples", type=_int_at_least(0), default=0,
                     help="attack the first N test images only (default: all)")
    _device_options(run)
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="what", required=True)
    tz = train.add_parser("zoo", help="train a dataset's zoo (skips trained members, resumes killed ones)")
    _common(tz, writes_zoo=True)
    tz.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    tz.add_argument("--members", type=_csv, help="comma-separated member or loss names")
    tz.add_argument("--seeds", type=_int_list, help="comma-separated seeds")
    _device_options(tz)
    tz.add_argument("--download", action="store_true", help="download the dataset if missing")
    tz.add_argument("--force", action="store_true", help="retrain members that exist")
    tz.set_defaults(func=cmd_train_zoo)

    zoo = sub.add_parser("zoo", help="inspect the zoo").add_subparsers(dest="what", required=True)
    zl = zoo.add_parser("list", help="members, clean accuracy, hash")
    _common(zl, dataset_required=False)
    zl.add_argument("--dataset", help="only this dataset")
    zl.set_defaults(func=cmd_zoo_list)

    at = sub.add_parser("attack", help="ε sweeps of FGSM, IFGSM, PGD, APGD, Square and the worst case: white-box "
                                       "runs or attacker × defender matrices")
    mode = at.add_mutually_exclusive_group(required=True)
    mode.add_argument("--whitebox", action="store_true", help="each member attacks itself")
    mode.add_argument("--blackbox", action="store_true", help="transfer attacks from --attacker")
    _common(at)
    at.add_argument("--attacks", type=_csv, default=["fgsm", "ifgsm"],
                    help="comma-separated (default fgsm,ifgsm, the paper's): fgsm, ifgsm, pgd, apgd-ce, apgd-dlr, "
                         "apgd-t, square; L2: fgm, pgd-l2, apgd-ce-l2, apgd-dlr-l2, apgd-t-l2; per-sample worst "
                         "case: worst, aa, worst-l2 (white-box)")
    at.add_argument("--eps", help="comma-separated ε (fractions like 8/255 allowed): in [0, 1] for L∞; "
                                  "default: the dataset's grid of the attacks' norm")
    at.add_argument("--attacker", help="black-box attacker member, or 'all' for the full matrix (default: the ce member of the other seed)")
    at.add_argument("--defenders", type=_csv, help="comma-separated members (default: the whole zoo)")
    at.add_argument("--attack-loss", default="ce", help="ce | cw | model (default ce, the paper's)")
    at.add_argument("--backend", default="native", help="native | torchattacks | art")
    at.add_argument("--steps", type=_int_at_least(1),
                    help="steps of IFGSM (default Kurakin's rule), PGD and APGD (default 100) and the ensembles' PGD/APGD")
    at.add_argument("--step-size", type=_step_size,
                    help="step size of IFGSM (default 1/255) and PGD (default 2.5 ε / steps), e.g. 2/255")
    at.add_argument("--restarts", type=_int_at_least(1), help="restarts of PGD, APGD and Square (default 1)")
    at.add_argument("--queries", type=_int_at_least(1), help="Square's query budget (default 5000)")
    at.add_argument("--targets", type=_int_at_least(1), help="APGD-T's target classes (default 9, at most K - 1)")
    at.add_argument("--attack-seed", type=_int_at_least(0),
                    help="seed of the random attacks (PGD, APGD, Square; default 0), recorded in each row")
    at.add_argument("--num-samples", type=_int_at_least(0), default=0, help="first N test samples (default: all)")
    at.add_argument("--batch-size", type=_int_at_least(1), default=0,
                    help="test samples attacked together (default 256 on CPU, 4096 on CUDA)")
    at.add_argument("--results-dir", type=_output_folder, help="default reports/<dataset>/results")
    _device_options(at, training=False)
    at.add_argument("--force", action="store_true", help="recompute cells already stored")
    at.set_defaults(func=cmd_attack)

    ex = sub.add_parser("experiment", help="the paper's generalization or noisy-label experiment")
    ex.add_argument("experiment", choices=("generalization", "noise"))
    _common(ex, writes_zoo=True)
    ex.add_argument("--preset", default="quick", help="paper | quick (default quick)")
    ex.add_argument("--members", type=_csv, help="comma-separated member or loss names (default: the zoo definition)")
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
    ev.add_argument("--num-samples", type=_int_at_least(1), help="when records on several test image counts are stored")
    rp.set_defaults(func=cmd_report)

    res = sub.add_parser("results", help="the result store: export, migrate, runs").add_subparsers(
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
    rr = res.add_parser("runs", help="the stored run configurations (run ids for robench report --run-id)")
    rr.add_argument("--dataset", help="the store in reports/<dataset>/results")
    rr.add_argument("--results-dir", type=_existing_folder, help="the results folder holding results.sqlite")
    rr.set_defaults(func=cmd_results_runs)

    data = sub.add_parser("data", help="which datasets are present")
    data.add_argument("action", choices=("list", "check"))
    data.add_argument("--data-root", type=_folder, default=Path("data"))
    data.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robench`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        with settings.preserved():  # a caller in the same Python process gets its settings back
            use_ieee_fp32()
            set_default_precision(getattr(args, "precision", "auto"))
            set_compile_training(getattr(args, "compile", False))
            func(args)
    except UserError as exc:
        sys.stderr.write(f"robench: error: {exc}\n")
        return 2
    except (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError) as exc:
        sys.stderr.write(f"robench: error: {exc.strerror}: {exc.filename}; check the folder and file paths given\n")
        return 2
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        sys.stderr.write(f"robench: error: {DiskFull(exc.filename or 'a file', intact=False)}\n")  # not atomic_write
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("robench: interrupted; re-run the same command to resume\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
