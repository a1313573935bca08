"""Does the random initialisation decide where gradient descent ends up (local minima)?

The same network trained from different random initial weights (Sequential(seed=...)) on the same
data, three arms of spirals: full-batch Adam (lr 1e-2) for a fixed number of epochs, so the initial
weights are the only thing that differs between runs (no shuffling, no mini-batch noise). Done for
a narrow, a middling and a wide hidden layer pair, to see whether the spread of final losses and
accuracies depends on the width.
"""

import numpy as np
from _common import parse_args, plot, table

import fastbp as fb


def main():
    args = parse_args(__doc__)
    widths, seeds, epochs = ([4, 32], range(3), 20) if args.quick else ([4, 8, 64], range(12), 1000)
    X, y = fb.datasets.spirals(n_samples=1200, noise=0.2, seed=0)
    X, X_test, y, y_test = fb.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    rows, results = [], {}
    for width in widths:
        results[width] = []
        for seed in seeds:
            net = fb.Sequential(
                fb.Dense(2, width),
                fb.ReLU(),
                fb.Dense(width, width),
                fb.ReLU(),
                fb.Dense(width, 3),
                loss=fb.SoftmaxCrossEntropy(),
                seed=seed,
            )
            hist = net.fit(
                X,
                y,
                epochs=epochs,
                batch_size=None,
                optimizer=fb.optim.Adam(lr=1e-2),
                shuffle=False,
                verbose=0,
            )
            results[width].append(
                (hist["loss"], net.evaluate(X, y)["loss"], net.evaluate(X_test, y_test)["accuracy"])
            )
        final = np.array([r[1] for r in results[width]])
        test = np.array([r[2] for r in results[width]])
        rows.append(
            (
                f"2-{width}-{width}-3",
                len(seeds),
                final.min(),
                float(np.median(final)),
                final.max(),
                f"{final.max() / final.min():.3g}x",
                f"{test.min():.3f}",
                f"{np.median(test):.3f}",
                f"{test.max():.3f}",
            )
        )

    print(
        f"spirals: {len(X)} training rows; full-batch Adam lr 1e-2, {epochs} epochs, ReLU; one "
        f"run per initialisation seed\n"
    )
    print(
        table(
            [
                "network",
                "seeds",
                "loss min",
                "loss median",
                "loss max",
                "max/min",
                "test acc min",
                "test acc median",
                "test acc max",
            ],
            rows,
        )
    )

    def draw(axes):
        colors = dict(zip(widths, ["tab:red", "tab:orange", "tab:blue"]))
        for width, runs in results.items():
            for k, (curve, _, _) in enumerate(runs):
                axes[0].plot(
                    range(1, epochs + 1),
                    curve,
                    color=colors[width],
                    lw=0.8,
                    alpha=0.7,
                    label=f"width {width}" if k == 0 else None,
                )
            finals = [r[1] for r in runs]
            axes[1].scatter(finals, [r[2] for r in runs], color=colors[width], s=18, label=f"width {width}")
        axes[0].set(
            xlabel="epoch", ylabel="training loss", yscale="log", title="one curve per initialisation seed"
        )
        axes[0].legend()
        axes[1].set(
            xlabel="final training loss", ylabel="test accuracy", xscale="log", title="where each seed ended"
        )
        axes[1].legend()

    plot(args.out / "local_minima.png", draw)


if __name__ == "__main__":
    main()
