"""Which optimizer trains fastest: SGD, momentum, Nesterov, Adam, AdamW, RMSprop, Adagrad, Adadelta?

One task (five noisy spiral arms, a 2-64-64-5 ReLU network, batch 32, the same initial weights
and batch order for every run) and each optimizer of fb.optim at every learning rate of one grid; its
row in the table is its best learning rate, picked by the final training loss (an optimizer at an
untuned rate says more about the rate than about the optimizer). The plot shows the loss curves at
those rates, and the final loss against the learning rate: how forgiving each optimizer is (the
last column counts the rates whose final loss is within 1.5x of the best).
"""

import numpy as np
from _common import parse_args, plot, table

import fastbp as fb

OPTIMIZERS = {
    "SGD": lambda lr: fb.optim.SGD(lr),
    "SGD momentum 0.9": lambda lr: fb.optim.SGD(lr, momentum=0.9),
    "SGD Nesterov 0.9": lambda lr: fb.optim.SGD(lr, momentum=0.9, nesterov=True),
    "Adam": lambda lr: fb.optim.Adam(lr),
    "AdamW (wd 1e-2)": lambda lr: fb.optim.AdamW(lr),
    "RMSprop": lambda lr: fb.optim.RMSprop(lr),
    "Adagrad": lambda lr: fb.optim.Adagrad(lr),
    "Adadelta": lambda lr: fb.optim.Adadelta(lr),
    "Adamax": lambda lr: fb.optim.Adamax(lr),
    "NAdam": lambda lr: fb.optim.NAdam(lr),
}


def main():
    args = parse_args(__doc__)
    n, epochs = (600, 3) if args.quick else (4000, 20)
    lrs = [1e-3, 1e-1] if args.quick else [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0]
    X, y = fb.datasets.spirals(n_samples=n, n_classes=5, noise=0.3, seed=0)
    X, X_test, y, y_test = fb.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    rows, best_curves, sweeps = [], {}, {}
    for name, make in OPTIMIZERS.items():
        runs = {}
        for lr in lrs:
            net = fb.Sequential(
                fb.Dense(2, 64),
                fb.ReLU(),
                fb.Dense(64, 64),
                fb.ReLU(),
                fb.Dense(64, 5),
                loss=fb.SoftmaxCrossEntropy(),
                seed=0,
            )
            hist = net.fit(
                X,
                y,
                epochs=epochs,
                batch_size=32,
                optimizer=make(lr),
                verbose=0,
                seed=0,
                callbacks=[fb.callbacks.TerminateOnNaN()],
            )
            final = np.inf if hist.diverged else hist["loss"][-1]
            runs[lr] = (final, hist, net.evaluate(X_test, y_test)["accuracy"])
        sweeps[name] = [runs[lr][0] for lr in lrs]
        lr = min(runs, key=lambda k: runs[k][0])
        final, hist, test_acc = runs[lr]
        best_curves[name] = hist["loss"]
        loss = hist["loss"]
        rows.append(
            (
                name,
                f"{lr:g}",
                loss[0],
                loss[min(4, epochs - 1)],
                final,
                f"{test_acc:.3f}",
                f"{1e3 * np.median(hist['seconds']):.1f}",
                f"{sum(v < 1.5 * final for v in sweeps[name])} of {len(lrs)}",
            )
        )

    print(
        f"spirals: {len(X)} training rows, 2-64-64-5 ReLU, batch 32, {epochs} epochs; learning "
        f"rates tried: {', '.join(f'{lr:g}' for lr in lrs)}\n"
    )
    print(
        table(
            [
                "optimizer",
                "best lr",
                "loss, epoch 1",
                f"loss, epoch {min(5, epochs)}",
                f"loss, epoch {epochs}",
                "test acc",
                "ms/epoch",
                "rates within 1.5x of best",
            ],
            rows,
        )
    )

    def draw(axes):
        for name, curve in best_curves.items():
            style = "--" if name.startswith("SGD") else "-"
            axes[0].plot(range(1, epochs + 1), curve, style, label=name)
            axes[1].plot(lrs, np.minimum(sweeps[name], 10.0), style, marker="o", ms=3, label=name)
        axes[0].set(
            xlabel="epoch", ylabel="training loss", yscale="log", title="loss curves, each at its best rate"
        )
        axes[0].legend(fontsize=7, ncol=2)
        axes[1].set(
            xlabel="learning rate",
            ylabel=f"training loss after {epochs} epochs",
            xscale="log",
            yscale="log",
            title="sensitivity to the learning rate (10: diverged)",
        )

    plot(args.out / "optimizers.png", draw)


if __name__ == "__main__":
    main()
