"""Do L1, L2, dropout and early stopping close the gap between training and test performance?

A network far larger than its data (2-256-256-3, 67k weights, ReLU) on 200 training points of three
noisy spiral arms; 300 more points are a validation set (early stopping watches it) and 1,500 a
test set. Every run starts from the same weights and trains with Adam (lr 3e-3, batch 32) for the
same epochs, except early stopping (patience 20 on the validation loss, best weights restored).
Cross-entropy here is the data term alone: evaluate() and fit's logs add the l1/l2 penalty.
"""

import numpy as np
from _common import cross_entropy, parse_args, plot, table

import fastbp as fb


def network(dropout=0.0, **penalty):
    hidden = [fb.Dropout(dropout)] if dropout else []
    return fb.Sequential(
        fb.Dense(2, 256),
        fb.ReLU(),
        *hidden,
        fb.Dense(256, 256),
        fb.ReLU(),
        *hidden,
        fb.Dense(256, 3),
        loss=fb.SoftmaxCrossEntropy(),
        seed=0,
        **penalty,
    )


def main():
    args = parse_args(__doc__)
    epochs = 5 if args.quick else 400
    X, y = fb.datasets.spirals(n_samples=2000, noise=0.6, seed=0)
    X, X_rest, y, y_rest = fb.datasets.train_test_split(X, y, test_size=1800, seed=0)
    X_val, X_test, y_val, y_test = X_rest[:300], X_rest[300:], y_rest[:300], y_rest[300:]
    methods = {
        "none": (network(), []),
        "L2 (l2=1e-3)": (network(l2=1e-3), []),
        "L2 (l2=1e-2)": (network(l2=1e-2), []),
        "L1 (l1=1e-3)": (network(l1=1e-3), []),
        "dropout 0.3": (network(dropout=0.3), []),
        "early stopping": (network(), [fb.callbacks.EarlyStopping("val_loss", patience=20)]),
    }
    rows, curves = [], {}
    for name, (net, callbacks) in methods.items():
        curve = curves[name] = []
        track = fb.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, net=net, curve=curve: curve.append(
                cross_entropy(net, X_test, y_test)
            )
        )
        hist = net.fit(
            X,
            y,
            epochs=epochs,
            batch_size=32,
            optimizer=fb.optim.Adam(lr=3e-3),
            validation_data=(X_val, y_val),
            callbacks=[track, *callbacks],
            verbose=0,
            seed=0,
        )
        train_acc, test_acc = net.evaluate(X, y)["accuracy"], net.evaluate(X_test, y_test)["accuracy"]
        train_ce, test_ce = cross_entropy(net, X, y), cross_entropy(net, X_test, y_test)
        stopped = callbacks[0].best_epoch + 1 if callbacks else len(hist)
        rows.append(
            (
                name,
                stopped,
                f"{train_acc:.3f}",
                f"{test_acc:.3f}",
                f"{train_acc - test_acc:.3f}",
                train_ce,
                test_ce,
                test_ce - train_ce,
            )
        )

    print(
        f"spirals, noise 0.6: {len(X)} training, {len(X_val)} validation, {len(X_test)} test "
        f"points; Adam lr 3e-3, batch 32, {epochs} epochs\n"
    )
    print(
        table(
            ["method", "epochs (kept)", "train acc", "test acc", "acc gap", "train CE", "test CE", "CE gap"],
            rows,
        )
    )

    def draw(axes):
        for name, curve in curves.items():
            axes[0].plot(range(1, len(curve) + 1), curve, label=name)
        axes[0].set(
            xlabel="epoch", ylabel="test cross-entropy", yscale="log", title="test loss while training"
        )
        axes[0].legend(fontsize=8)
        x = np.arange(len(rows))
        axes[1].bar(x - 0.2, [float(r[2]) for r in rows], 0.4, label="train")
        axes[1].bar(x + 0.2, [float(r[3]) for r in rows], 0.4, label="test")
        axes[1].set(ylabel="accuracy", ylim=(0.8, 1.0), title="train vs test accuracy")
        axes[1].set_xticks(x, [r[0] for r in rows], rotation=25, fontsize=8)
        axes[1].legend()

    plot(args.out / "regularization.png", draw)


if __name__ == "__main__":
    main()
