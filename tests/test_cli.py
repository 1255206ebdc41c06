"""The command line: help everywhere, exit code 2 with one line for user errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from robench.cli import build_parser, main
from robench.zoo import load_definition


def _robench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "robench.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _subcommands(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommands(sub, prefix + (name,))


@pytest.mark.parametrize("command", list(_subcommands(build_parser())), ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: robench" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "zoo", "--dataset", "nope"], "unknown dataset 'nope'; valid: "),
        (["train", "zoo", "--dataset", "digits", "--members", "ce-s9"], "unknown member 'ce-s9'; valid: ce-s0"),
        (["train", "zoo", "--dataset", "digits", "--preset", "huge"], "unknown preset 'huge'"),
        (["train", "zoo", "--dataset", "digits", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "zoo", "--dataset", "mnist", "--data-root", "/nonexistent"], "MNIST/raw/train-images-idx3-ubyte"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, tmp_path):
    result = _robench(*args, "--zoo-dir", str(tmp_path / "zoo"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "--dataset", "nope"], "unknown dataset 'nope'; valid: "),
        (["zoo", "list", "--dataset", "nope"], "unknown dataset 'nope'; valid: "),
        (["zoo", "list", "--zoo-dir", "a-file"], "Not a directory: a-file"),
        (["report", "--dataset", "digits", "--out", "a-file"], "Not a directory: a-file"),
        (["attack", "--whitebox", "--dataset", "digits", "--steps", "0"], "--steps: expected an integer >= 1"),
        (["attack", "--whitebox", "--dataset", "digits", "--step-size", "2"],  # 0-255 units: α would be 2
         "--step-size: expected a step size in (0, 1]"),
        (["attack", "--whitebox", "--dataset", "digits", "--step-size", "1/0"], "like 0.004 or 1/255, got '1/0'"),
    ],
)
def test_path_and_option_errors_exit_2_with_one_line(args, message, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = _robench(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_step_size_takes_a_fraction():
    from robench.cli import build_parser

    args = build_parser().parse_args(["attack", "--whitebox", "--dataset", "digits", "--step-size", "2/255"])
    assert args.step_size == 2 / 255


def _copied_member(digits_zoo, tmp_path):
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(digits_zoo / "digits" / "ce-s0", zoo / "digits" / "ce-s0")
    return zoo, zoo / "digits" / "ce-s0"


def test_incomplete_card_and_unreadable_weights_exit_2(digits_zoo, tmp_path):
    import hashlib
    import json

    zoo, member = _copied_member(digits_zoo, tmp_path)
    attack = ("attack", "--whitebox", "--dataset", "digits", "--zoo-dir", str(zoo), "--num-samples", "4",
              "--results-dir", str(tmp_path / "results"))
    card = json.loads((member / "card.json").read_text())
    (member / "card.json").write_text(json.dumps({k: v for k, v in card.items() if k != "architecture"}))
    result = _robench(*attack)
    assert result.returncode == 2 and "incomplete (no architecture)" in result.stderr, result.stderr
    garbage = b"\xff" * 64  # not safetensors, but the card names its hash
    (member / "weights.safetensors").write_bytes(garbage)
    card["weights_sha256"] = hashlib.sha256(garbage).hexdigest()
    (member / "card.json").write_text(json.dumps(card))
    result = _robench(*attack)
    assert result.returncode == 2 and "not a readable safetensors file" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_zoo_list_shows_members(digits_zoo):
    result = _robench("zoo", "list", "--dataset", "digits", "--zoo-dir", str(digits_zoo))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["member", "role", "loss", "bound"]
    names = {line.split()[0] for line in lines[1:]}
    assert names == {m.name for m in load_definition("digits", digits_zoo)}


def test_data_list_and_check(tmp_path):
    listed = _robench("data", "list", "--data-root", str(tmp_path))
    assert listed.returncode == 0
    assert "digits" in listed.stdout and "present" in listed.stdout
    checked = _robench("data", "check", "--data-root", str(tmp_path))
    assert checked.returncode == 2 and "cifar10" in checked.stderr


def test_precision_and_compile_options_set_the_process_defaults(monkeypatch):
    import robench.cli as cli
    import robench.device as device
    import robench.train.members as members

    monkeypatch.setattr(device, "_default_precision", "auto")
    monkeypatch.setattr(device, "_compile_training", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # PyTorch's default
    seen = {}

    def fake_train_zoo(*args, **kwargs):
        seen.update(precision=device.resolve_precision("auto", torch.device("cpu")),
                    compiled=device.compile_training(), tf32=torch.backends.cudnn.allow_tf32)
        return []

    monkeypatch.setattr(members, "train_zoo", fake_train_zoo)
    assert cli.main(["train", "zoo", "--dataset", "digits", "--precision", "bf16", "--compile"]) == 0
    assert seen == {"precision": "bf16", "compiled": True, "tf32": False}  # fp32 convolutions are IEEE fp32
    assert cli.main(["train", "zoo", "--dataset", "digits"]) == 0
    assert seen == {"precision": "fp32", "compiled": False, "tf32": False}  # auto on the CPU
    with pytest.raises(SystemExit) as exit_info:  # --compile is a training option only
        cli.build_parser().parse_args(["attack", "--whitebox", "--dataset", "digits", "--compile"])
    assert exit_info.value.code == 2


def _stored_run(results_dir):
    """A store holding one attack record of run ``r-wb`` under its run configuration."""
    from factories import attack_record
    from robench.store import ResultStore, RunRecord

    run = RunRecord.of("attack", {"mode": "whitebox"}, "0.1.0")
    with ResultStore(results_dir) as store:
        store.save_run(run)
        store.append([attack_record(run_id=run.run_id)])
    return run


def test_results_runs_lists_the_stored_runs(tmp_path):
    run = _stored_run(tmp_path)
    listed = _robench("results", "runs", "--results-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.strip().splitlines()
    assert line.startswith(f"{run.run_id}  attack") and run.config in line
    missing = _robench("results", "runs")
    assert missing.returncode == 2 and "--results-dir DIR or --dataset D" in missing.stderr


@pytest.mark.parametrize("option, message", [
    (("--run-id", "nope"), "no attack records of run 'nope' here; runs with attack records: "),
    (("--precision", "fp16"), "invalid choice: 'fp16'"),
    (("--num-samples", "0"), "expected an integer >= 1"),
])
def test_report_evaluation_options_reach_the_report(tmp_path, option, message):
    _stored_run(tmp_path / "results")
    result = _robench("report", "--dataset", "digits", "--results-dir", str(tmp_path / "results"),
                      "--zoo-dir", str(tmp_path / "zoo"), "--out", str(tmp_path / "out"), *option)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out" / "index.html").exists()


def test_export_without_a_store_is_a_user_error(tmp_path):
    result = _robench("results", "export", "--results-dir", str(tmp_path))
    assert result.returncode == 2 and "no result store in" in result.stderr


def test_run_takes_a_test_subset(monkeypatch):
    import robench.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *args: seen.setdefault("args", args) and "index.html")
    assert main(["run", "--num-samples", "50"]) == 0
    assert seen["args"][0] == "digits" and seen["args"][-1] == 50
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--num-samples", "-1"])
    assert exit_info.value.code == 2
