"""What every example shares: the command line, markdown tables, and an optional matplotlib plot."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import fastbp as fb

OUT = Path(__file__).resolve().parent / "out"


def parse_args(doc: str) -> argparse.Namespace:
    """--quick (tiny settings, a few seconds: the test suite runs this), --out DIR (the PNG) and
    --threads N (default 1: on a shared machine, more BLAS threads than free cores make timings
    erratic)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the PNG (default {OUT})")
    parser.add_argument("--threads", type=int, default=1, help="threads for fastbp and BLAS (default 1)")
    args = parser.parse_args()
    fb.set_num_threads(args.threads)
    return args


def digits(test_size: float = 0.25, seed: int = 0):
    """scikit-learn's 8x8 digits, pixels in [0, 1]: (X_train, X_test, y_train, y_test)."""
    X, y = fb.datasets.digits()
    return fb.datasets.train_test_split(X, y, test_size=test_size, seed=seed)


def cross_entropy(net, X, y) -> float:
    """Mean cross-entropy of the data alone: net.evaluate's loss also holds the l1/l2 penalty."""
    p = net.predict_proba(X)[np.arange(len(y)), y]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


def table(headers, rows) -> str:
    """A markdown table; floats are given with 4 significant digits unless already formatted."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def plot(path: Path, draw, ncols: int = 2, width: float = 11.0, height: float = 4.2) -> None:
    """Call draw(axes) on a row of `ncols` panels and save the figure to `path`; without matplotlib
    say that the plot was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nmatplotlib is not installed (pip install fastbp[plot]): plot {path.name} skipped")
        return
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    draw(axes[0])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    print(f"\nplot: {path}")
