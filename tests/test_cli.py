"""The `fastbp` command. A few runs go through a real subprocess (each pays Numba's start-up); the
many bad-input cases call cli.main in-process, the same code path, and check the same promise:
exit status 2 and one line on stderr, never a traceback."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import cli
from fastbp.datasets import moons
from fastbp.io import load_checkpoint


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small classification csv (text labels, features on different scales), a regression .npy
    and a few broken files."""
    root = tmp_path_factory.mktemp("cli")
    X, y = moons(120, noise=0.1, seed=2)
    kinds = np.array(["north", "south"])
    rows = [[f"{a * 100:.5f}", f"{b:.5f}", kinds[c]] for (a, b), c in zip(X, y)]
    paths = {"csv": write_csv(root / "moons.csv", ["width", "height", "kind"], rows)}
    paths["csv_bad_feature"] = write_csv(
        root / "bad.csv", ["width", "color", "kind"], [["1.0", "red", "a"], ["2.0", "blue", "b"]]
    )
    paths["csv_nan"] = write_csv(root / "nan.csv", ["a", "b"], [["1", "0"], ["nan", "1"]])
    paths["csv_gap"] = write_csv(root / "gap.csv", ["a", "b"], [["1", "0"], ["", "1"]])
    paths["csv_one_class"] = write_csv(root / "one.csv", ["a", "b"], [["1", "x"], ["2", "x"]])
    paths["csv_ragged"] = str(root / "ragged.csv")
    with open(paths["csv_ragged"], "w") as handle:
        handle.write("a,b,c\n1,2,3\n4,5\n")
    paths["csv_empty"] = str(root / "empty.csv")
    open(paths["csv_empty"], "w").close()
    paths["txt"] = write_csv(root / "data.txt", ["a", "b"], [["1", "2"]])
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(200, 3)) * [1.0, 10.0, 100.0]
    yr = 5000.0 + 300.0 * Xr[:, 0] + 20.0 * Xr[:, 1] - Xr[:, 2]
    paths["npy"] = str(root / "reg.npy")
    np.save(paths["npy"], np.column_stack([Xr, yr]))
    paths["npy_one_column"] = str(root / "one.npy")
    np.save(paths["npy_one_column"], np.zeros((5, 1)))
    paths["npz_no_y"] = str(root / "noy.npz")
    np.savez(paths["npz_no_y"], X=np.zeros((4, 2)))
    paths["npz"] = str(root / "xy.npz")
    np.savez(paths["npz"], X=Xr, y=yr)
    paths["root"] = str(root)
    return paths


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "fastbp", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(rc, err, fragment):
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("fastbp: error: ")
    assert "Traceback" not in err
    assert fragment in lines[0], lines[0]


# --- real processes -------------------------------------------------------------------------------


def test_train_then_predict_through_the_command(files, tmp_path):
    model = tmp_path / "model.npz"
    done = run_cli(
        "train",
        files["csv"],
        "--target",
        "kind",
        "--hidden",
        "32,16",
        "--epochs",
        "40",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--val-split",
        "0.2",
        "--out",
        model,
        "--verbose",
        "2",
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 40/40" in done.stderr
    assert "accuracy" in done.stdout and f"saved {model}" in done.stdout
    checkpoint = load_checkpoint(model)
    assert checkpoint.extra["classes"].tolist() == ["north", "south"]
    assert checkpoint.extra["feature_names"].tolist() == ["width", "height"]

    out = tmp_path / "preds.csv"
    done = run_cli("predict", model, files["csv"], "--out", out)
    assert done.returncode == 0, done.stderr
    with open(out, newline="") as handle:
        predicted = [row[0] for row in csv.reader(handle)]
    with open(files["csv"], newline="") as handle:
        truth = [row[2] for row in csv.reader(handle)]
    assert predicted[0] == "kind" and len(predicted) == len(truth)
    assert set(predicted[1:]) <= {"north", "south"}
    accuracy = np.mean([p == t for p, t in zip(predicted[1:], truth[1:])])
    assert accuracy > 0.9


def test_demo_quick_prints_the_result_table():
    done = run_cli("demo", "--quick", "--verbose", "0")
    assert done.returncode == 0, done.stderr
    for label in ("test accuracy", "training time", "samples/s"):
        assert label in done.stdout


def test_bad_input_in_a_real_process_is_one_line_and_status_2(files):
    done = run_cli("train", files["csv"], "--hidden", "abc")
    assert_one_line_error(done.returncode, done.stderr, "--hidden")


# --- in-process: the same main() ------------------------------------------------------------------


def test_saved_regression_model_takes_raw_inputs(files, tmp_path, capsys):
    """Standardization is folded into the weights: fb.load(...).predict on raw X is the model."""
    model = tmp_path / "reg.npz"
    rc = cli.main(
        [
            "train",
            files["npy"],
            "--hidden",
            "none",
            "--epochs",
            "60",
            "--lr",
            "0.05",
            "--dtype",
            "float64",
            "--out",
            str(model),
            "--verbose",
            "0",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "rmse" in capsys.readouterr().out
    data = np.load(files["npy"])
    net = fb.io.load(model)
    np.testing.assert_allclose(net.predict(data[:, :3])[:, 0], data[:, 3], rtol=1e-3)
    # predict accepts the training .npy too: its target column is dropped.
    assert cli.main(["predict", str(model), files["npy"]]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "prediction" and len(printed) == 201
    np.testing.assert_allclose(float(printed[1]), data[0, 3], rtol=1e-3)


def test_npz_data_and_explicit_loss(files, tmp_path, capsys):
    model = tmp_path / "m.npz"
    rc = cli.main(
        [
            "train",
            files["npz"],
            "--loss",
            "huber",
            "--hidden",
            "8",
            "--epochs",
            "2",
            "--optimizer",
            "sgd",
            "--batch-size",
            "full",
            "--val-split",
            "0",
            "--out",
            str(model),
            "--verbose",
            "0",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert load_checkpoint(model).net.loss == fb.Huber()


def test_no_command_and_help(capsys):
    assert_one_line_error(cli.main([]), capsys.readouterr().err, "choose a command")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--target" in capsys.readouterr().out


def test_compile_reports_each_part(capsys):
    assert cli.main(["compile", "--dtypes", "float64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("compiling fastbp's kernels")
    assert out[1].split()[0] == "float64" and out[1].endswith(" s")
    assert out[-1].startswith("done in ") and len(out) == 3


_PRECOMPILED = """
import fastbp as fb
from fastbp._kernels.cpu import online_pair, steps, train
fb.precompile("float64")
# Where each kernel takes the flat parameters, whose dtype is the network's.
kernels = ((train.batch_steps, 7), (train.online_steps, 7), (online_pair.SGD_WORKER, 7),
           (online_pair.ADAM_WORKER, 7), (steps.forward, 3), (steps.loss_and_grad, 7))
for kernel, params in kernels:
    print(any(str(sig[params]) == "array(float64, 1d, C)" for sig in kernel.signatures))
# The loops also for float32 data (X is their 10th or 11th argument), which fit trains on where it lies.
workers = (online_pair.SGD_WORKER, 11), (online_pair.ADAM_WORKER, 11)
for loop, x in ((train.batch_steps, 10), (train.online_steps, 10)) + workers:
    data_types = {str(sig[x]) for sig in loop.signatures}
    print(data_types >= {"array(float32, 2d, C)", "array(float64, 2d, C)"})
# The entry points of every activation, loss, optimizer rule and product, the fused SGD pass, the
# penalty and dropout, compiled on their own (indirect.py), for float64.
from fastbp._kernels.cpu import activations, indirect, losses, optim
signatures = activations.signatures("float64")
wanted = {(entry, sig) for pair in activations.ENTRIES for entry, sig in zip(pair, signatures)}
compiled = set(indirect.compiled_entries())
print(wanted <= compiled)
print({(entry, losses.entry_signature("float64")) for entry in losses.ENTRIES} <= compiled)
print({(entry, optim.step_signature("float64")) for entry in optim.STEP_ENTRIES} <= compiled)
from fastbp._kernels.cpu import blas
names = {entry.__name__ for entry, _ in compiled if entry.__module__ in (blas.__name__, steps.__name__)}
products = {entry.__name__ for entry in blas.NN_ENTRIES + blas.TN_ENTRIES + blas.NT_ENTRIES if entry}
print(len(products) == 8 and names == products | {"backward_sgd_entry", "penalty_entry", "dropout_entry"})
"""


def test_precompile_runs_every_loop_a_network_uses():
    """In a fresh process, so the signatures can only come from precompile's own calls: the
    mini-batch and batch-1 loops (each for data of both float dtypes; batch 1's fused loop of larger
    networks too), predict's forward pass and
    loss_and_grad, and the entry points of
    every activation, loss, optimizer rule and matrix product, the fused SGD pass, the penalty and
    dropout, in the dtype asked."""
    done = subprocess.run([sys.executable, "-c", _PRECOMPILED], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 14


def test_precompile_rejects_other_dtypes():
    for dtypes in ("float16", (), ("float32", "int64")):
        with pytest.raises(ValueError, match="dtypes must be taken from"):
            fb.precompile(dtypes)


def test_bench_runs_bench_peers_as_a_script(tmp_path, capsys, monkeypatch):
    script = tmp_path / "peers.py"
    script.write_text("import sys\nif __name__ == '__main__':\n    print(sys.argv[1:])\n    sys.exit(3)\n")
    monkeypatch.setattr(cli, "bench_script", lambda: str(script))
    assert cli.main(["bench", "--quick", "x"]) == 3
    assert capsys.readouterr().out.strip() == "['--quick', 'x']"
    monkeypatch.setattr(cli, "bench_script", lambda: str(tmp_path / "missing.py"))
    assert cli.main(["bench"]) == 1
    assert "not available" in capsys.readouterr().err


BAD_INPUT = {
    "missing-file": (["train", "{root}/nope.csv"], "no such file"),
    "directory": (["train", "{root}"], "data must be a .csv, .npy or .npz file"),
    "directory-csv": (["train", "{root}/dir.csv"], "is a directory"),
    "unknown-suffix": (["train", "{txt}"], "data must be a .csv, .npy or .npz file"),
    "empty-csv": (["train", "{csv_empty}"], "the file is empty"),
    "ragged-csv": (["train", "{csv_ragged}"], "line 3: 2 fields but the header has 3"),
    "unknown-target": (["train", "{csv}", "--target", "colour"], "no column named 'colour'"),
    "target-index": (["train", "{csv}", "--target", "7"], "column index 7 is out of range"),
    "non-numeric-feature": (
        ["train", "{csv_bad_feature}", "--target", "kind"],
        "feature column 'color' is not numeric",
    ),
    "nan-feature": (["train", "{csv_nan}"], "column 'a' holds 'nan' in data row 2"),
    "empty-cell": (["train", "{csv_gap}"], "empty cell in data row 2"),
    "one-class": (["train", "{csv_one_class}"], "single value"),
    "text-target-mse": (["train", "{csv}", "--loss", "mse"], "target is not numeric"),
    "bce-many-values": (["train", "{npy}", "--loss", "bce"], "needs a target with 2 classes"),
    "npy-one-column": (["train", "{npy_one_column}"], "at least one feature column"),
    "npy-target-name": (["train", "{npy}", "--target", "price"], "must be a column index"),
    "npz-no-y": (["train", "{npz_no_y}"], "must hold arrays 'X' and 'y'"),
    "npz-target": (["train", "{npz}", "--target", "0"], "--target does not apply"),
    "hidden": (["train", "{csv}", "--hidden", "abc"], "argument --hidden"),
    "hidden-zero": (["train", "{csv}", "--hidden", "64,0"], "positive layer widths"),
    "epochs-negative": (["train", "{csv}", "--epochs", "-1"], "argument --epochs"),
    "epochs-zero": (["train", "{csv}", "--epochs", "0"], "positive integer"),
    "batch-size": (["train", "{csv}", "--batch-size", "0"], "argument --batch-size"),
    "lr": (["train", "{csv}", "--lr", "-0.1"], "argument --lr"),
    "lr-nan": (["train", "{csv}", "--lr", "nan"], "argument --lr"),
    "val-split": (["train", "{csv}", "--val-split", "1.5"], "fraction in [0, 1)"),
    "val-split-too-small": (["train", "{csv_nan}", "--val-split", "0.1"], "holds 'nan'"),
    "optimizer": (["train", "{csv}", "--optimizer", "adamm"], "unknown optimizer 'adamm'"),
    "activation": (["train", "{csv}", "--activation", "relux"], "unknown activation 'relux'"),
    "loss": (["train", "{csv}", "--loss", "hinge"], "unknown loss 'hinge'"),
    "seed": (["train", "{csv}", "--seed", "-3"], "argument --seed"),
    "unknown-flag": (["train", "{csv}", "--epoch", "3"], "unrecognized arguments"),
    "unknown-command": (["fly"], "invalid choice: 'fly'"),
    "compile-dtype": (["compile", "--dtypes", "float16"], "expected float32 and/or float64"),
    "compile-extra": (["compile", "--quick"], "unrecognized arguments"),
    "predict-missing-model": (["predict", "{root}/none.npz", "{csv}"], "no such file"),
    "predict-not-a-model": (["predict", "{npz}", "{csv}"], "not a fastbp model file"),
    "predict-csv-as-model": (["predict", "{csv}", "{csv}"], "not a fastbp model file"),
    "predict-missing-column": (
        ["predict", "{model}", "{csv_bad_feature}"],
        "missing feature column(s) 'height'",
    ),
    "predict-wrong-width": (["predict", "{model}", "{npy}"], "4 columns but the model takes 2"),
    "predict-unwritable": (["predict", "{model}", "{csv}", "--out", "{root}/no/dir/p.csv"], "cannot write"),
    "train-unwritable": (["train", "{csv}", "--epochs", "1", "--out", "{root}/no/dir/m.npz"], "cannot write"),
}


@pytest.fixture(scope="module")
def model(files):
    path = os.path.join(files["root"], "small.npz")
    os.makedirs(os.path.join(files["root"], "dir.csv"), exist_ok=True)
    assert (
        cli.main(["train", files["csv"], "--hidden", "4", "--epochs", "1", "--out", path, "--verbose", "0"])
        == 0
    )
    return path


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_line_and_status_2(files, model, capsys, monkeypatch, tmp_path, name):
    monkeypatch.chdir(tmp_path)  # a case that wrongly succeeded would write ./model.npz here
    argv, fragment = BAD_INPUT[name]
    argv = [arg.format(model=model, **files) for arg in argv]
    capsys.readouterr()
    rc = cli.main(argv)
    captured = capsys.readouterr()
    assert_one_line_error(rc, captured.err, fragment)
