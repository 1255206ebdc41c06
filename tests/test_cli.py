"""The command line: help everywhere, what each command does with good input (bad input:
tests/test_bad_input.py)."""

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


def test_precision_and_compile_options_set_the_process_defaults(monkeypatch, process_settings):
    import robench.cli as cli
    import robench.device as device
    import robench.train.members as members

    device.set_default_precision("auto")
    device.set_compile_training(False)
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
    seen = {}

    def fake_train_zoo(*args, **kwargs):
        seen.update(precision=device.resolve_precision("auto", torch.device("cpu")),
                    compiled=device.compile_training(), tf32=torch.backends.cudnn.allow_tf32)
        return []

    monkeypatch.setattr(members, "train_zoo", fake_train_zoo)
    assert cli.main(["train", "zoo", "--dataset", "digits", "--precision", "bf16", "--compile"]) == 0
    assert seen == {"precision": "bf16", "compiled": True, "tf32": False}  # fp32 convolutions are IEEE fp32
    assert (device.default_precision(), device.compile_training(), torch.backends.cudnn.allow_tf32) == \
        ("auto", False, True)  # the caller's own settings are back once main() returns
    assert cli.main(["train", "zoo", "--dataset", "digits"]) == 0
    assert seen == {"precision": "fp32", "compiled": False, "tf32": False}  # auto on the CPU
    with pytest.raises(SystemExit) as exit_info:  # --compile is a training option only
        cli.build_parser().parse_args(["attack", "--whitebox", "--dataset", "digits", "--compile"])
    assert exit_info.value.code == 2


def _stored_run(results_dir):
    """A store holding one attack record under its run configuration; returns the run."""
    from factories import attack_record, in_runs
    from robench.store import ResultStore

    [run], records = in_runs([attack_record()])
    with ResultStore(results_dir) as store:
        store.save_run(run)
        store.append(records)
    return run


def test_results_runs_lists_the_stored_runs(tmp_path):
    run = _stored_run(tmp_path)
    listed = _robench("results", "runs", "--results-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.strip().splitlines()
    assert line.startswith(f"{run.run_id}  attack") and run.config in line


def test_run_takes_a_test_subset(monkeypatch):
    import robench.pipeline as pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *args: seen.setdefault("args", args) and "index.html")
    assert main(["run", "--num-samples", "50"]) == 0
    assert seen["args"][0] == "digits" and seen["args"][-1] == 50
