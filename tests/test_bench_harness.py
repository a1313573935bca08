"""The benchmark harness (bench/peers.py, bench/limit.py) runs and reports what it says: structure,
keys, columns and the GEMMs it times. Never the speed: no figure here is compared with anything."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb

BENCH = Path(__file__).resolve().parent.parent / "bench"
TINY = {"tiny": (8, 16, 4)}


def _load(name: str):
    """A bench/ script as a module (bench/ is not a package), loaded once."""
    key = f"fastbp_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture
def peers():
    # measure() gives fastbp all cores (fb.set_num_threads); put back what the suite had.
    before = fb.get_num_threads()
    yield _load("peers")
    fb.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_result():
    before = fb.get_num_threads()
    result = _load("peers").measure(
        nets=TINY,
        batches=(1, 8),
        optimizers=("sgd", "adam"),
        peers=("fastbp", "reference"),
        repeats=1,
        rows=64,
    )
    fb.set_num_threads(before)
    return result


def test_measure_gives_one_row_per_net_optimizer_and_batch(tiny_result):
    assert set(tiny_result) == {"meta", "results"}
    rows = tiny_result["results"]
    assert [(r["net"], r["optimizer"], r["batch"]) for r in rows] == [
        ("tiny", "sgd", 1),
        ("tiny", "sgd", 8),
        ("tiny", "adam", 1),
        ("tiny", "adam", 8),
    ]
    peers = _load("peers")
    for row in rows:
        assert row["widths"] == [8, 16, 4]
        assert row["lr"] == peers.LR[row["optimizer"]]
        assert row["rows"] == peers.rows_for(row["batch"], 64)
        assert row["errors"] == {}
        assert set(row["samples_per_s"]) == {"fastbp", "reference"}
        assert set(row["runs"]) == {"fastbp", "reference"}
        for name, rates in row["runs"].items():
            assert len(rates) == 1
            assert row["samples_per_s"][name] == max(rates)
            assert math.isfinite(rates[0]) and rates[0] > 0
        assert row["best_peer"] == "reference"
        assert row["ratio"] == pytest.approx(
            row["samples_per_s"]["fastbp"] / row["samples_per_s"]["reference"]
        )
        assert math.isfinite(row["gemm_limit"]) and row["gemm_limit"] > 0


def test_measure_records_the_environment(tiny_result):
    meta = tiny_result["meta"]
    assert meta["runners"] == ["fastbp", "reference"]
    assert meta["missing"] == {}
    assert meta["repeats"] == 1 and meta["rows"] == 64 and meta["dtype"] == "float32"
    assert meta["threads"] >= 1 and meta["threads_used"]["fastbp"] == meta["threads"]
    assert {"numpy", "numba", "fastbp"} <= set(meta["versions"])
    assert meta["blas"] and all("num_threads" in b for b in meta["blas"])
    assert meta["seconds"] > 0


def test_result_is_plain_json(tiny_result, tmp_path):
    peers = _load("peers")
    path = tmp_path / "out" / "peers.json"
    peers.write_json(tiny_result, path)
    assert json.loads(path.read_text()) == tiny_result


def test_table_has_a_column_per_peer_and_a_row_per_result(tiny_result):
    lines = _load("peers").table(tiny_result).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["net", "optimizer", "batch", "fastbp", "reference", "GEMM limit", "fastbp / best peer"]
    assert len(lines) == 2 + len(tiny_result["results"])
    for line, row in zip(lines[2:], tiny_result["results"]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(header)
        assert cells[:3] == [row["net"], row["optimizer"], str(row["batch"])]
        assert cells[3] == f"{row['samples_per_s']['fastbp']:,.0f}"
        assert cells[-1] == f"{row['ratio']:.2f} (reference)"


def test_main_prints_the_table_and_writes_json_and_plot(peers, tmp_path, capsys):
    path, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = [
        "--nets",
        "small",
        "--batches",
        "4",
        "--optimizers",
        "sgd",
        "--peers",
        "fastbp,reference",
        "--repeats",
        "1",
        "--rows",
        "32",
        "--no-limit",
        "--json",
        str(path),
        "--plot",
        str(png),
    ]
    assert peers.main(argv) == 0
    out = capsys.readouterr().out
    assert "| small | sgd | 4 |" in out
    result = json.loads(path.read_text())
    assert [(r["net"], r["batch"], r["rows"]) for r in result["results"]] == [("small", 4, 32)]
    assert "gemm_limit" not in result["results"][0]
    assert result["meta"]["quick"] is False
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_usage_errors(peers):
    for argv in (["--peers", "nope"], ["--nets", "huge"], ["--optimizers", "lbfgs"], ["--batches", "0"]):
        with pytest.raises(SystemExit) as done:
            peers.main(argv)
        assert done.value.code == 2, argv


def test_missing_peers_are_skipped_with_a_reason(peers, monkeypatch):
    monkeypatch.setattr(peers, "_installed", lambda *modules: "torch" not in modules and "jax" not in modules)
    runners, missing = peers.available_runners(("fastbp", "torch", "jax", "reference"))
    assert runners == ["fastbp", "reference"]
    assert set(missing) == {"torch", "jax"} and "not installed" in missing["torch"]
    monkeypatch.setattr(peers, "_installed", lambda *modules: True)
    assert peers.available_runners(("jax",))[0] == ["jax-step", "jax-scan"]


def test_rows_are_whole_batches():
    rows_for = _load("peers").rows_for
    assert rows_for(1, 8192) == 2048
    assert rows_for(64, 8192) == 8192
    assert rows_for(1024, 2048) == 4096  # at least four batches
    assert rows_for(100, 8192) == 8100


def test_limit_times_the_products_of_a_training_step():
    limit = _load("limit")
    step = limit.GemmStep((8, 16, 4), 3)
    assert step.n_products == 5
    assert step.flops == 3 * (2 * 3 * 8 * 16 + 2 * 3 * 16 * 4) - 2 * 3 * 8 * 16
    step.run()
    A, W, D = step.A, step.W, step.D
    np.testing.assert_allclose(A[1], A[0] @ W[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(A[2], A[1] @ W[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(step.dW[0], A[0].T @ D[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(step.dA[1], D[1] @ W[1].T, rtol=1e-5, atol=1e-5)
    rate = limit.limit_samples_per_s((8, 16, 4), 4, min_seconds=0.001, repeats=1)
    assert isinstance(rate, float) and math.isfinite(rate) and rate > 0


def test_fastbp_bench_runs_peers_py(peers, capsys):
    from fastbp import cli

    argv = [
        "bench",
        "--nets",
        "small",
        "--batches",
        "2",
        "--optimizers",
        "adam",
        "--peers",
        "fastbp",
        "--repeats",
        "1",
        "--rows",
        "16",
        "--no-limit",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| net | optimizer | batch | fastbp | fastbp / best peer |" in out
    assert "| small | adam | 2 |" in out


def test_adam_cost_times_the_kernel_it_names_and_prints_a_row_per_batch(capsys):
    adam_cost = _load("adam_cost")
    net = adam_cost.make_net()
    assert [layer.out_features for layer in net.layers if hasattr(layer, "out_features")] == [256, 128, 10]
    adam_pass = adam_cost.AdamPass(5)
    start = adam_pass.params.copy()
    assert adam_pass.best_of(2) > 0
    # Two Adam steps of lr 1e-3 on a steady gradient move each parameter by 2e-3 against its sign.
    np.testing.assert_allclose(start - adam_pass.params, 2e-3 * np.sign(adam_pass.grads), rtol=1e-3)
    before = fb.get_num_threads()
    try:
        adam_cost.main(["--batches", "4096", "--repeats", "1", "--threads", "1"])
        adam_cost.main(["--net", "small", "--batches", "1", "--repeats", "1", "--threads", "1"])
    finally:
        fb.set_num_threads(before)
    out = capsys.readouterr().out
    assert "small 64-128-64-10, 17,226 parameters" in out
    for batch in ("4096", "1"):
        rows = [line for line in out.splitlines() if line.startswith(f"| {batch} |")]
        assert len(rows) == 1 and rows[0].count("|") == 9
    for argv in (["--batches", "0"], ["--net", "huge"]):
        with pytest.raises(SystemExit):
            adam_cost.main(argv)


def test_ab_fit_exports_a_revision_and_rejects_bad_arguments(tmp_path):
    ab_fit = _load("ab_fit")
    tree = ab_fit.export("HEAD", str(tmp_path / "rev"))
    assert (Path(tree) / "fastbp" / "__init__.py").is_file()
    assert (Path(tree) / "fastbp" / "_kernels" / "cpu" / "steps.py").is_file()
    for argv in (["--rev", "HEAD", "--nets", "huge"], ["--rev", "HEAD", "--batch", "0"], []):
        with pytest.raises(SystemExit):
            ab_fit.main(argv)


def test_batch1_floor_times_the_rank1_update_and_prints_a_row_per_net(capsys):
    floor = _load("batch1_floor")
    rng = np.random.default_rng(0)
    W, x, d = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=3)
    want = W + 2 * (-0.5) * np.outer(x, d)
    floor.rank1_updates(W, x, d, -0.5, 2)
    np.testing.assert_allclose(W, want, rtol=1e-12)
    floor.main(["--nets", "small", "--repeats", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| small | 64x128 (32 KB) |")]
    assert len(rows) == 1 and rows[0].count("|") == 7
    for argv in (["--nets", "huge"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            floor.main(argv)


def test_step_parts_sweeps_time_the_same_algorithm_before_and_after():
    parts = _load("bench_step_parts")
    rng = np.random.default_rng(3)
    inputs = np.abs(rng.normal(size=(3, 9))) * (rng.uniform(size=(3, 9)) < 0.5)
    deltas, W0 = rng.normal(size=(2, 6)), rng.normal(size=(9, 6))
    for backward in (False, True):
        results = []
        for after in (False, True):
            W, z, g_prev = W0.copy(), np.zeros(6), np.zeros(9)
            parts._sweep_calls(after, backward, 5, inputs, deltas, W, z, g_prev)
            results.append((W, z, g_prev))
        for before, after in zip(*results):
            np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)


def test_step_parts_calls_do_the_same_work_directly_and_through_the_address():
    from fastbp._kernels.cpu import activations

    parts = _load("bench_step_parts")
    fns = activations.entry_addresses(activations.RELU, np.float64)
    rng = np.random.default_rng(4)
    Z0, bias, G0 = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=(3, 5))
    for backward in (False, True):
        results = []
        for after in (False, True):
            Z, G = Z0.copy(), G0.copy()
            parts._activation_calls(after, backward, 2, fns, Z, bias, G)
            results.append((Z, G))
        for before, after in zip(*results):
            np.testing.assert_array_equal(after, before)
    Z = Z0.copy()
    parts._activation_calls(True, False, 1, fns, Z, bias, G0.copy())
    np.testing.assert_allclose(Z, np.maximum(Z0 + bias, 0), rtol=1e-15)


def test_targets_verdicts_follow_the_bounds():
    targets = _load("targets")
    # reached, needed, bound on one core, bound on two cores
    assert targets.verdict(300, 300, 100, 100) == "met"
    assert targets.verdict(200, 300, 250, 290) == "bound below"
    assert targets.verdict(200, 300, 250, 400) == "bound below on 1 core"
    assert targets.verdict(200, 300, 350, 400) == "headroom"
    # A bound fastbp already reaches (or none) proves nothing.
    assert targets.verdict(200, 300, 150, 400) == "no bound"
    assert targets.verdict(200, 300, None, None) == "no bound"
    # extra, pass / SGD step on one core, on two
    assert targets.adam_verdict(0.15, 0.5, 0.25) == "met"
    assert targets.adam_verdict(0.30, 0.40, 0.20) == "bound below"
    assert targets.adam_verdict(0.30, 0.20, 0.10) == "bound below on 1 core"
    assert targets.adam_verdict(0.30, 0.10, 0.05) == "headroom"
    assert [targets.target_of(b) for b in (1, 8, 16, 64, 128, 256)] == [
        ("batch 1", 3.0),
        None,
        ("batch 16-64", 1.5),
        ("batch 16-64", 1.5),
        None,
        ("batch >= 256", 1.1),
    ]


def _row(optimizer, batch, rates, limit):
    return {"net": "n", "optimizer": optimizer, "batch": batch, "samples_per_s": rates, "gemm_limit": limit}


def test_targets_check_computes_needs_bounds_and_adams_extra():
    targets = _load("targets")
    result = {
        "results": [
            # At batch 1 the NumPy reference is no rival (the target names torch and jax).
            _row("sgd", 1, {"fastbp": 90.0, "reference": 500.0, "torch": 10.0, "jax": 40.0}, 5.0),
            _row("adam", 1, {"fastbp": 8.0, "torch": 10.0, "jax": 20.0}, 5.0),
            # fastbp's SGD step (160/s) beats the products (100/s): it stands in for them.
            _row("sgd", 16, {"fastbp": 160.0, "reference": 50.0, "jax-scan": 90.0, "jax": 90.0}, 100.0),
            _row("adam", 16, {"fastbp": 75.0, "reference": 50.0, "jax": 60.0}, 100.0),
            _row("sgd", 256, {"fastbp": 950.0, "reference": 920.0}, 1000.0),
            # fastbp (120/s) already beats the products (100/s): they bound nothing here.
            _row("sgd", 64, {"fastbp": 120.0, "jax": 90.0}, 100.0),
        ]
    }
    parts = {"n": {"parameters": 10, "adam_pass_s": 0.1, "w0_update_s": 0.005}}
    checked = targets.check(result, parts)
    speed = {(e["optimizer"], e["batch"]): e for e in checked["speed"]}
    sgd1 = speed[("sgd", 1)]
    assert (sgd1["rival"], sgd1["needed"], sgd1["verdict"]) == ("jax", 120.0, "headroom")
    assert sgd1["bound"] == pytest.approx(200.0) and sgd1["bound_two_cores"] == pytest.approx(400.0)
    adam1 = speed[("adam", 1)]  # needs 60/s, the pass alone allows 10/s (20/s on two cores)
    assert (adam1["needed"], adam1["bound"], adam1["verdict"]) == (60.0, pytest.approx(10.0), "bound below")
    assert speed[("sgd", 16)]["verdict"] == "met" and speed[("sgd", 16)]["rival"] == "jax"
    adam16 = speed[("adam", 16)]  # rest = 16 / 160 = 0.1 s; + 0.1 s pass: 80/s, 106.7/s on two cores
    assert adam16["bound"] == pytest.approx(80.0) and adam16["bound_two_cores"] == pytest.approx(16 / 0.15)
    assert (adam16["needed"], adam16["verdict"]) == (90.0, "bound below on 1 core")
    sgd256 = speed[("sgd", 256)]
    assert sgd256["share"] == pytest.approx(0.95) and sgd256["share_verdict"] == "met"
    assert sgd256["verdict"] == "bound below"  # needs 1012/s; the products allow 1000, fastbp 950
    assert speed[("sgd", 64)]["verdict"] == "no bound"
    (extra,) = checked["adam"]
    assert extra["extra"] == pytest.approx(160 / 75 - 1) and extra["floor"] == pytest.approx(1.0)
    assert extra["verdict"] == "bound below"
    summary = targets.summary(checked)
    assert "- batch 1: >= 3x: 1 headroom, 1 bound below (of 2)" in summary
    assert "- batch 16-64: >= 1.5x: 1 met, 1 bound below on 1 core, 1 no bound (of 3)" in summary
    assert "- Adam <= 15% over SGD: 1 bound below (of 1)" in summary


def test_targets_batch_one_bound_counts_two_workers_where_fastbp_runs_them():
    """Where fastbp's batch-1 step splits the pass or update the bound is made of (online_pair's
    rule: two threads, layers large enough), the bound is the two-core figure."""
    from fastbp._kernels.cpu import online_pair

    targets = _load("targets")
    rows = [
        _row("sgd", 1, {"fastbp": 90.0, "torch": 10.0, "jax": 40.0}, 5.0),
        _row("adam", 1, {"fastbp": 8.0, "torch": 10.0, "jax": 20.0}, 5.0),
    ]
    adam_size, sgd_size = online_pair.MIN_ADAM_LAYER_PARAMETERS, online_pair.MIN_LAYER_PARAMETERS
    bounds = {}
    for threads in (1, 2):
        for size in (adam_size, sgd_size):
            result = {"meta": {"threads_used": {"fastbp": threads}}, "results": rows}
            parts = {"n": {"parameters": 3 * size, "layers": 3, "adam_pass_s": 0.1, "w0_update_s": 0.005}}
            for e in targets.check(result, parts)["speed"]:
                bounds[threads, size, e["optimizer"]] = (round(e["bound"]), round(e["bound_two_cores"]))
    for size in (adam_size, sgd_size):
        assert bounds[1, size, "sgd"] == (200, 400) and bounds[1, size, "adam"] == (10, 20)
        assert bounds[2, size, "adam"] == (20, 20)  # Adam's threshold is the lower
    assert bounds[2, adam_size, "sgd"] == (200, 400)
    assert bounds[2, sgd_size, "sgd"] == (400, 400)


def test_targets_main_runs_peers_and_the_parts_and_writes_json(tmp_path, capsys):
    targets = _load("targets")
    before = fb.get_num_threads()
    path = tmp_path / "targets.json"
    try:
        targets.main(
            ["--nets", "small", "--batches", "1,16", "--peers", "fastbp,reference", "--repeats", "1"]
            + ["--rows", "64", "--threads", "1", "--json", str(path)]
        )
    finally:
        fb.set_num_threads(before)
    out = capsys.readouterr().out
    assert "parts alone (one core): small 17,226 parameters, Adam pass" in out
    assert "W0 update" in out
    assert "- batch 16-64: >= 1.5x:" in out and "- Adam <= 15% over SGD:" in out
    saved = json.loads(path.read_text())
    assert len(saved["checked"]["speed"]) == 2 and len(saved["checked"]["adam"]) == 1
    # Batch 1 has no rival here (torch and jax left out): its rows are skipped, not failed.
    assert {e["batch"] for e in saved["checked"]["speed"]} == {16}
    # --recheck: the saved measurements checked again, nothing timed, the same verdicts.
    again = tmp_path / "again.json"
    targets.main(["--recheck", str(path), "--json", str(again)])
    assert "rechecked from" in capsys.readouterr().out
    assert json.loads(again.read_text())["checked"] == saved["checked"]
    for argv in (["--nets", "huge"], ["--repeats", "0"], ["--peers", "reference"]):
        with pytest.raises(SystemExit):
            targets.main(argv)
