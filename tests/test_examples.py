"""Every script in examples/ runs with --quick, prints a markdown table and writes its PNG.

The scripts run in this process (runpy, as __main__), where Numba's compiled kernels are already
loaded: a subprocess per script would pay the import and cache load each time.
"""

import runpy
import sys
from pathlib import Path

import pytest

import fastbp as fb

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def run_example(script: Path, args: list[str], monkeypatch, capsys) -> str:
    """Run `script` as __main__ with `args`; returns what it printed. The thread count the
    examples set (--threads, default 1) is put back afterwards."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    threads = fb.get_num_threads()
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        fb.set_num_threads(threads)
        sys.modules.pop("_common", None)
    return capsys.readouterr().out


def test_there_are_examples():
    assert {p.stem for p in SCRIPTS} >= {
        "batch_size",
        "learning_rate",
        "depth",
        "activations",
        "regularization",
        "optimizers",
        "local_minima",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_quick(script, tmp_path, monkeypatch, capsys):
    out = run_example(script, ["--quick", "--out", str(tmp_path)], monkeypatch, capsys)
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) >= 3, out  # header, separator, at least one row
    assert len({line.count("|") for line in table}) == 1, "ragged table:\n" + "\n".join(table)
    png = tmp_path / f"{script.stem}.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert script.read_text().startswith('"""'), "each example opens with its question"


def test_example_without_matplotlib_prints_the_table_and_skips_the_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    out = run_example(EXAMPLES / "learning_rate.py", ["--quick", "--out", str(tmp_path)], monkeypatch, capsys)
    assert "| task | lr |" in out and "plot learning_rate.png skipped" in out
    assert not list(tmp_path.iterdir())
