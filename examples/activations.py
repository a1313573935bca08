"""Which activation function trains fastest, and which reaches the best accuracy?

The same network (2-128-128-5) on five noisy spiral arms (a curved boundary: the Identity row is
the linear baseline) with each of fastbp's activations, from the same seed and batch order: Adam
(lr 3e-3), batch 32. The networks train in turns, one epoch each (fit(epochs=1) again and again,
the optimizer's state carrying over), so a burst of load on a shared machine slows them all alike.
Speed is History's samples_per_s, the median over the epochs: it covers the whole training step
(forward, backward and update), not the activation alone.
"""

import numpy as np
from _common import parse_args, plot, table

import fastbp as fb

ACTIVATIONS = [
    fb.ReLU(),
    fb.LeakyReLU(),
    fb.ELU(),
    fb.GELU(),
    fb.SiLU(),
    fb.Softplus(),
    fb.Tanh(),
    fb.Sigmoid(),
    fb.Identity(),
]


def epochs_to(target, accuracy) -> str:
    reached = [epoch for epoch, value in enumerate(accuracy, 1) if value >= target]
    return str(reached[0]) if reached else "never"


def main():
    args = parse_args(__doc__)
    n, epochs = (600, 3) if args.quick else (4000, 60)
    activations = ACTIVATIONS[::4] if args.quick else ACTIVATIONS
    X, y = fb.datasets.spirals(n_samples=n, n_classes=5, noise=0.3, seed=0)
    X, X_test, y, y_test = fb.datasets.train_test_split(X, y, test_size=0.25, seed=0)
    runs = {
        type(act).__name__: (
            fb.Sequential(
                fb.Dense(2, 128),
                act,
                fb.Dense(128, 128),
                act,
                fb.Dense(128, 5),
                loss=fb.SoftmaxCrossEntropy(),
                seed=0,
            ),
            fb.optim.Adam(lr=3e-3),
            fb.History(),
        )
        for act in activations
    }
    for epoch in range(epochs):
        for net, optimizer, hist in runs.values():
            hist.append(
                net.fit(X, y, epochs=1, batch_size=32, optimizer=optimizer, verbose=0, seed=epoch).epochs[0]
            )
    rows = [
        [
            name,
            float(np.median(hist["samples_per_s"])),
            epochs_to(0.9, hist["accuracy"]),
            hist["loss"][-1],
            hist["accuracy"][-1],
            net.evaluate(X_test, y_test)["accuracy"],
        ]
        for name, (net, _, hist) in runs.items()
    ]
    fastest = max(row[1] for row in rows)
    for row in rows:
        row[1:] = [f"{row[1]:,.0f}", f"{row[1] / fastest:.2f}", row[2]] + [f"{v:.3f}" for v in row[3:]]

    print(
        f"spirals: {len(X)} training rows, {len(X_test)} test rows; 2-128-128-5, Adam lr 3e-3, "
        f"batch 32, {epochs} epochs, {fb.get_num_threads()} thread(s)\n"
    )
    print(
        table(
            [
                "activation",
                "samples/s",
                "relative speed",
                "epochs to 90% train acc",
                "train loss",
                "train acc",
                "test acc",
            ],
            rows,
        )
    )

    def draw(axes):
        names = [row[0] for row in rows]
        axes[0].barh(names, [float(row[1].replace(",", "")) for row in rows])
        axes[0].set(xlabel="training samples per second", title="speed (whole training step)")
        axes[0].invert_yaxis()
        for name, (_, _, hist) in runs.items():
            axes[1].plot(range(1, epochs + 1), hist["accuracy"], label=name)
        axes[1].set(xlabel="epoch", ylabel="training accuracy", title="accuracy while training")
        axes[1].legend(fontsize=7, ncol=2)

    plot(args.out / "activations.png", draw)


if __name__ == "__main__":
    main()
