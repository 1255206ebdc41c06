"""The benchmark command (benchmarks/, not part of the package): a --quick CPU run at the
smallest sizes writes the JSON document with every key, the three attack implementations
agree cell by cell in the matrix and in the white-box runs, and every ratio is a positive
finite number. No timing assertions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TINY = ["--threads", "1", "--models", "3", "--samples", "6", "--eps", "0,0.05", "--train-steps", "5",
        "--rounds", "2", "--batch", "8", "--train-samples", "16"]

pytest.importorskip("torchattacks")
pytest.importorskip("art")


def _ratios(node):
    """Every value under a "ratios" key anywhere in the document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "ratios":
                yield from value.items()
            else:
                yield from _ratios(value)


@pytest.fixture(scope="module")
def quick_doc(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tmp.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # one thread: no oversubscription
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "all", "--quick", "--device", "cpu", "--out", str(out), *TINY],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "written to" in proc.stdout
    return json.loads(out.read_text())


def test_document_keys(quick_doc):
    machine = quick_doc["machine"]
    for key in ("platform", "cpu_count", "torch_version", "torch_threads", "device", "device_name",
                "robench_version", "git_commit", "timestamp_utc"):
        assert key in machine, key
    assert machine["device"] == "cpu"
    assert quick_doc["options"]["quick"] is True and quick_doc["options"]["models"] == 3
    assert set(quick_doc["results"]) == {"attacks", "whitebox", "train", "loss", "store"}
    train = quick_doc["results"]["train"]
    for arch in ("mnist-cnn", "wrn-28-2"):
        assert train[arch]["robench"]["steady_images_per_s"] > 0
        assert train[arch]["eager"]["images_per_s"] > 0
    loss = quick_doc["results"]["loss"]
    assert set(loss["loss_alone"]) == set(loss["train_step"]) == {"ce", "1toN-sym-d1", "1toN-zero-d1"}


@pytest.mark.parametrize("name, defenders", [("attacks", 3), ("whitebox", 1)])
def test_attack_implementations_identical_on_cpu(quick_doc, name, defenders):
    attacks = quick_doc["results"][name]
    assert attacks["mode"] == {"attacks": "blackbox", "whitebox": "whitebox"}[name]
    assert attacks["cells"] == 3 * defenders * 2 * 2  # attackers x defenders x attacks x eps
    for peer in ("torchattacks", "art"):
        agreement = attacks["agreement"][peer]
        assert agreement["cells"] == attacks["cells"]
        assert agreement["identical"] is True, agreement
        assert attacks[peer]["wall_s"] > 0
    assert attacks["robench_precision"] == "fp32"
    assert attacks["rounds"] == 2
    for label in ("robench", "torchattacks", "art"):  # CPU fp32: every round counts alike
        assert len(attacks[label]["wall_s_rounds"]) == 2 and attacks[label]["repeatable"] is True
    assert all(len(values) == 2 for values in attacks["ratios_per_round"].values())
    assert attacks["ifgsm_image_steps"]["per_eps_loops"] == 3 * 6 * 15  # models x N x steps(0.05)
    assert set(attacks["clean_accuracy"]) == {"ce-s0", "ce-s1", "ce-s2"}


def test_store_and_csv_baseline_hold_every_appended_row(quick_doc):
    store = quick_doc["results"]["store"]
    assert (store["rows"], store["batch_rows"], store["batches"]) == (2000, 100, 20)
    for name in ("store", "csv_rewrite"):
        assert store[name]["rows_stored"] == 2000 and store[name]["total_s"] > 0, name


def test_ratios_positive_finite(quick_doc):
    ratios = dict(_ratios(quick_doc["results"]))
    assert {"torchattacks/robench", "art/robench", "1toN-sym-d1/ce train_step", "csv_rewrite/store"} <= set(ratios)
    for name, value in ratios.items():
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, value)


def test_attack_rounds_rotate_and_report_the_median_round():
    from benchmarks.attack_matrix import _interleaved, _over_rounds

    calls = []
    walls = {"a": iter([3.0, 1.0, 2.0]), "b": iter([5.0, 4.0, 9.0]), "c": iter([1.0, 1.0, 1.0])}

    def runner(label):
        def run():
            calls.append(label)
            wall = next(walls[label])
            return {"seconds": {"fgsm": wall / 2, "ifgsm": wall / 2}, "counts": {("x", "x", "fgsm", 0.1): 1}}
        return run

    rounds = _interleaved({label: runner(label) for label in "abc"}, 3)
    assert calls == list("abc" "bca" "cab")  # round r starts with the r-th implementation
    merged = _over_rounds(rounds["b"])
    assert merged["round_walls"] == [5.0, 4.0, 9.0] and merged["seconds"] == {"fgsm": 2.5, "ifgsm": 2.5}
    assert merged["repeatable"] is True
    rounds["a"][1]["counts"] = {("x", "x", "fgsm", 0.1): 0}
    assert _over_rounds(rounds["a"])["repeatable"] is False


def test_bad_option_is_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "attacks", "--samples", "0",
                           "--out", str(tmp_path / "x.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--samples must be at least 1" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_profile_step_prints_the_kernel_table(capsys):
    from benchmarks.profile_step import main

    main(["--device", "cpu", "--batch", "4", "--steps", "1", "--rows", "60", "--shapes"])  # every op: none drops out
    out = capsys.readouterr().out
    assert "convolution" in out  # the model's kernels are in the table
    assert "Input Shapes" in out and "[4, 1, 28, 28]" in out  # --shapes: rows per input shape
    assert "mnist-cnn batch 4 fp32 on cpu:" in out and "us per image" in out
    assert "engine IFGSM step (gradient sign, step, clamp):" in out and "host" in out


def test_profile_step_graph_needs_cuda(capsys):
    from benchmarks.profile_step import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--graph"])
    assert exit_info.value.code == 2 and "--graph needs a CUDA device" in capsys.readouterr().err


def test_profile_step_first_conv_variants_leave_the_stock_model_alone():
    from benchmarks.profile_step import _first_conv_variant
    from robench.models import create_model
    from robench.models.im2col import Im2colConv2d

    stock = create_model("mnist-cnn", 10, "linear", (0.13,), (0.31,)).to(memory_format=torch.channels_last)
    first = stock.features[0]
    firsts = {name: _first_conv_variant(stock, name).features[0] for name in ("cudnn", "cudnn-nchw", "im2col")}
    assert type(firsts["cudnn"]) is torch.nn.Conv2d and firsts["cudnn"].weight is first.weight
    assert type(firsts["im2col"]) is Im2colConv2d and firsts["im2col"].conv.weight is first.weight
    nchw = firsts["cudnn-nchw"].weight
    assert nchw.stride() == (25, 25, 5, 1) and torch.equal(nchw, first.weight)
    assert first.weight.stride() == (25, 1, 5, 1)  # the stock weight stays channels_last


def test_attack_benchmark_im2col_variant_patches_the_engine_only_inside():
    from benchmarks.attack_matrix import _im2col_convs
    from robench.evaluate import attack_runner
    from robench.evaluate.members import LoadedMember
    from robench.models import create_model
    from robench.models.im2col import Im2colConv2d

    member = LoadedMember("m", create_model("mnist-cnn", 10, "linear", (0.13,), (0.31,)), {})
    with _im2col_convs():
        (inside,) = attack_runner._fast_members([member])
    (outside,) = attack_runner._fast_members([member])
    assert type(inside.model.features[0]) is Im2colConv2d
    assert type(outside.model.features[0]) is torch.nn.Conv2d


def test_worst_case_quick_document_and_agreement(tmp_path):
    """``worst-case --quick``: the JSON's structure (budgets on both sides, per-cell
    accuracies, agreement, acceptance) and the agreement logic; no timing assertions."""
    from benchmarks.worst_case import agreement

    out = tmp_path / "wc.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "worst-case", "--quick", "--device", "cpu", "--out", str(out),
         "--threads", "1", "--models", "2", "--samples", "6", "--eps", "0,0.05", "--train-steps", "5",
         "--rounds", "2", "--attack-steps", "2", "--targets", "1", "--queries", "6"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmarks"] == ["worst-case"] and set(doc["results"]) == {"worst-case"}
    wc = doc["results"]["worst-case"]
    assert (wc["ensemble"], wc["stages"], wc["models"], wc["samples"], wc["eps"]) == (
        "aa", ["apgd-ce", "apgd-t", "square"], 2, 6, [0.0, 0.05])
    budgets = wc["budgets"]
    assert (budgets["steps"], budgets["targets"], budgets["queries"], budgets["seed"]) == (2, 1, 6, 0)
    peer = budgets["torchattacks"]
    assert peer["APGD"]["steps"] == peer["APGDT"]["steps"] == 2 and peer["APGD"]["loss"] == "ce"
    assert peer["APGDT"]["n_classes"] == 2 and peer["Square"]["n_queries"] == 4  # T + 1, Q - 2
    members = {"ce-s0", "ce-s1"}
    for label in ("robench", "torchattacks"):
        r = wc[label]
        assert r["wall_s"] > 0 and len(r["wall_s_rounds"]) == 2 and r["repeatable"] is True
        assert r["image_steps"] > 0 and r["queries"] > 0
        assert set(wc["accuracy"][label]) == members
        assert all(set(cells) == {"0", "0.05"} for cells in wc["accuracy"][label].values())
        assert set(wc["stage_accuracy"][label]) == {"apgd-ce", "apgd-t", "square"}
        assert set(r["per_eps"]["0.05"]["stages"]) == {"apgd-ce", "apgd-t", "square"}
    assert wc["robench_precision"] == "fp32" and "0" in wc["robench"]["per_eps"]
    assert wc["accuracy"]["robench"]["ce-s0"]["0"] == wc["accuracy"]["torchattacks"]["ce-s0"]["0"]  # clean
    assert len(wc["ratios_per_round"]["torchattacks/robench"]) == 2 and wc["ratios"]["torchattacks/robench"] > 0
    a = wc["agreement"]
    assert a["cells"] == a["compared"] == wc["cells"] == 4 and a["missing"] == []
    excess = max(wc["accuracy"]["robench"][m][e] - wc["accuracy"]["torchattacks"][m][e]  # percent
                 for m in members for e in ("0", "0.05"))
    assert a["max_excess_points"] == pytest.approx(excess)
    acc = wc["acceptance"]
    assert acc["accuracy_met"] == a["within_bar"] == (not a["cells_over_bar"])
    assert acc["met"] == (acc["speedup_met"] and acc["accuracy_met"])

    # the logic on hand-made counts of 400 samples: 1 image = 0.25 points
    rb = {("m0", 0.0): 400, ("m0", 0.1): 201, ("m1", 0.1): 100, ("m1", 0.2): 50}
    ta = {("m0", 0.0): 400, ("m0", 0.1): 199, ("m1", 0.1): 103, ("m1", 0.3): 7}
    got = agreement(rb, ta, 400)
    assert (got["cells"], got["compared"], got["identical_cells"]) == (5, 3, 1)
    assert got["max_excess_points"] == pytest.approx(0.5) and got["max_excess_cell"]["member"] == "m0"
    assert got["max_deficit_points"] == pytest.approx(0.75)
    assert got["cells_over_bar"] == []  # 0.5 points is at the bar, not over it
    assert [(c["member"], c["eps"]) for c in got["missing"]] == [("m1", 0.2), ("m1", 0.3)]
    assert got["within_bar"] is False  # a cell without a counterpart fails the comparison
    rb[("m0", 0.1)] = 202  # 0.75 points above
    del rb[("m1", 0.2)], ta[("m1", 0.3)]
    got = agreement(rb, ta, 400)
    assert [(c["member"], c["eps"], c["excess_points"]) for c in got["cells_over_bar"]] == [("m0", 0.1, 0.75)]
    assert got["within_bar"] is False and got["missing"] == []
    assert agreement({("m", 0.1): 3}, {("m", 0.1): 5}, 10)["max_excess_points"] == pytest.approx(-20.0)
