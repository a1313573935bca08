"""How does the learning rate change convergence, and when does training diverge?

Plain mini-batch SGD (batch 32) at learning rates spaced by about 3x, on two tasks: a regression
with the mean squared error (scikit-learn's diabetes data, 10 features, standardised target; a
10-64-64-1 ReLU network) and a classification with softmax cross-entropy (scikit-learn's digits; a
64-128-10 ReLU network). Each run starts from the same weights and sees the batches in the same
order. A TerminateOnNaN callback ends a run quietly when its loss overflows; History.diverged says
where, and the plot marks that point with an x. The last column counts hidden ReLU units that output
zero on every training row after training ("dead": no gradient reaches their weights again).
"""

import numpy as np
from _common import digits, parse_args, plot, table

import fastbp as fb


def diabetes():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), ((y - y.mean()) / y.std())[:, None]


def train(net, X, y, lr, epochs):
    """History of plain SGD at `lr`; a run that overflows stops there instead of raising."""
    return net.fit(
        X,
        y,
        epochs=epochs,
        batch_size=32,
        optimizer="sgd",
        lr=lr,
        verbose=0,
        seed=0,
        callbacks=[fb.callbacks.TerminateOnNaN()],
    )


def dead_units(net, X) -> str:
    """Hidden ReLU units that are zero on every row of X (the hidden layers redone in NumPy: fastbp
    returns only the network's output)."""
    A, dead, total = X, 0, 0
    for layer in net.dense_layers[:-1]:
        A = np.maximum(A @ layer.W + layer.b, 0.0)
        dead, total = dead + int((A.max(axis=0) <= 0).sum()), total + A.shape[1]
    return f"{dead}/{total}"


def main():
    args = parse_args(__doc__)
    epochs = 4 if args.quick else 100
    lrs = [0.01, 0.3, 3.0] if args.quick else [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
    X_digits, _, y_digits, _ = digits()
    tasks = {
        "diabetes, MSE": (
            *diabetes(),
            lambda: fb.Sequential(
                fb.Dense(10, 64),
                fb.ReLU(),
                fb.Dense(64, 64),
                fb.ReLU(),
                fb.Dense(64, 1),
                loss=fb.MSE(),
                seed=0,
            ),
        ),
        "digits, cross-entropy": (
            X_digits,
            y_digits,
            lambda: fb.Sequential(
                fb.Dense(64, 128), fb.ReLU(), fb.Dense(128, 10), loss=fb.SoftmaxCrossEntropy(), seed=0
            ),
        ),
    }
    rows, curves = [], {task: {} for task in tasks}
    for task, (X, y, make_net) in tasks.items():
        for lr in lrs:
            net = make_net()
            hist = train(net, X, y, lr, epochs)
            curves[task][lr] = (hist["loss"], hist.diverged)
            if hist.diverged:
                where = hist.diverged
                result = f"diverged: loss {where['loss']} at epoch {where['epoch'] + 1}"
            else:
                result = f"{hist['loss'][-1]:.4g}"
            accuracy = hist["accuracy"][-1] if hist["accuracy"] else None
            rows.append(
                (
                    task,
                    lr,
                    hist["loss"][0] if len(hist) else "-",
                    result,
                    f"{accuracy:.3f}" if accuracy is not None else "-",
                    "-" if hist.diverged else dead_units(net, X),
                )
            )

    print(f"plain SGD, batch 32, {epochs} epochs; loss = mean training loss over each epoch\n")
    print(table(["task", "lr", "loss, epoch 1", f"loss, epoch {epochs}", "train acc", "dead ReLUs"], rows))

    def draw(axes):
        from matplotlib import colormaps

        colors = dict(zip(lrs, colormaps["viridis"](np.linspace(0, 0.9, len(lrs)))))
        for ax, (task, runs) in zip(axes, curves.items()):
            top = 2 * max(max(losses, default=0) for losses, _ in runs.values())
            for lr, (losses, diverged) in runs.items():
                if diverged:  # an x at the epoch where the loss overflowed, above the curves
                    epoch = diverged["epoch"] + 1
                    ax.plot(
                        epoch,
                        top,
                        "x",
                        ms=9,
                        mew=2,
                        color=colors[lr],
                        label=f"lr={lr:g}: diverged in epoch {epoch}",
                    )
                else:
                    ax.plot(range(1, len(losses) + 1), losses, color=colors[lr], label=f"lr={lr:g}")
            ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title=task)
            ax.legend(fontsize=7)

    plot(args.out / "learning_rate.png", draw)


if __name__ == "__main__":
    main()
