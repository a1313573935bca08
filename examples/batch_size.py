"""Full batch, SGD or mini-batches: which gets furthest in the same wall-clock time?

Batch gradient descent makes one exact update per epoch; SGD (batch_size=1) makes one noisy update
per sample; a mini-batch of k samples makes n/k updates of middling noise. Each is trained here for
the same number of seconds: the same network (64-128-10, ReLU) on scikit-learn's digits, plain SGD
with one learning rate for all, a callback that stops fit when the time is up. The clock pauses
while the callback measures the training loss, so the curves (and ms/epoch, the training seconds
over the epochs run) show training time only.
"""

import time

import numpy as np
from _common import digits, parse_args, plot, table

import fastbp as fb


class TimeBudget(fb.callbacks.Callback):
    """Stops fit at the first epoch end after `seconds` of training; records (seconds, loss)."""

    def __init__(self, seconds, X, y):
        self.seconds, self.X, self.y = seconds, X, y
        self.curve = []

    def on_train_begin(self, state):
        self.start, self.paused = time.perf_counter(), 0.0

    def on_epoch_end(self, state, logs):
        tick = time.perf_counter()
        loss = state.net.evaluate(self.X, self.y)["loss"]
        elapsed = tick - self.start - self.paused
        self.paused += time.perf_counter() - tick
        self.curve.append((elapsed, loss))
        state.stop_training = elapsed >= self.seconds


def main():
    args = parse_args(__doc__)
    budget = 0.25 if args.quick else 3.0
    sizes = [None, 1, 32] if args.quick else [None, 1, 4, 16, 64, 256]
    X, X_test, y, y_test = digits()
    n, lr = len(X), 0.05
    rows, curves = [], {}
    for size in sizes:
        net = fb.Sequential(
            fb.Dense(64, 128), fb.ReLU(), fb.Dense(128, 10), loss=fb.SoftmaxCrossEntropy(), seed=0
        )
        # One epoch at lr=0 first, so loading the compiled code is not charged to the budget.
        net.fit(X, y, epochs=1, batch_size=size, optimizer="sgd", lr=0.0, verbose=0)
        timer = TimeBudget(budget, X, y)
        hist = net.fit(
            X, y, epochs=10**6, batch_size=size, optimizer="sgd", lr=lr, verbose=0, seed=0, callbacks=[timer]
        )
        updates = -(-n // (size or n))
        name = "full batch" if size is None else ("SGD (1)" if size == 1 else f"mini-batch {size}")
        curves[name] = np.array(timer.curve)
        rows.append(
            (
                name,
                updates,
                f"{1e3 * timer.curve[-1][0] / len(hist):.2f}",
                len(hist),
                f"{updates * len(hist):,}",
                timer.curve[-1][1],
                f"{net.evaluate(X_test, y_test)['accuracy']:.3f}",
            )
        )

    print(f"digits: {n} training rows, SGD lr={lr}, {budget:g} s of training per batch size\n")
    print(
        table(
            ["batch size", "updates/epoch", "ms/epoch", "epochs", "updates", "train loss", "test acc"], rows
        )
    )

    def draw(axes):
        for name, curve in curves.items():
            axes[0].plot(curve[:, 0], curve[:, 1], label=name)
        axes[0].set(
            xlabel="training seconds",
            ylabel="training loss",
            yscale="log",
            title=f"loss reached in {budget:g} s",
        )
        axes[0].legend()
        axes[1].bar([r[0] for r in rows], [float(r[2]) for r in rows])
        axes[1].set(ylabel="ms per epoch", yscale="log", title="time per epoch")
        axes[1].tick_params(axis="x", rotation=30)

    plot(args.out / "batch_size.png", draw)


if __name__ == "__main__":
    main()
