"""Do gradients vanish as networks get deeper, and does ReLU fix it where the sigmoid fails?

Networks of 1 to 10 hidden layers (32 units each) on scikit-learn's digits, with sigmoid or ReLU
hidden activations (fastbp's default initialisation: Glorot for the sigmoid, He for ReLU). Before
training, one backward pass over the training set (net.loss_and_grad) fills net.grads; the norm
of each layer's weight gradient (net.dense_layers[i].dW) shows how much of the error signal reaches
it. Then each network trains for the same epochs with plain SGD (batch 32), from the same weights.
"""

import numpy as np
from _common import digits, parse_args, plot, table

import fastbp as fb


def network(hidden_layers, activation):
    widths = [64] + [32] * hidden_layers
    layers = []
    for n_in, n_out in zip(widths, widths[1:]):
        layers += [fb.Dense(n_in, n_out), activation()]
    return fb.Sequential(*layers, fb.Dense(widths[-1], 10), loss=fb.SoftmaxCrossEntropy(), seed=0)


def main():
    args = parse_args(__doc__)
    depths = [1, 4] if args.quick else [1, 2, 4, 7, 10]
    epochs, lr = (3, 0.1) if args.quick else (100, 0.1)
    X, X_test, y, y_test = digits()
    rows, norms, curves = [], {}, {}
    for activation in (fb.Sigmoid, fb.ReLU):
        for depth in depths:
            net = network(depth, activation)
            net.loss_and_grad(X, y)
            norm = [float(np.linalg.norm(layer.dW)) for layer in net.dense_layers]
            hist = net.fit(X, y, epochs=epochs, batch_size=32, optimizer="sgd", lr=lr, verbose=0, seed=0)
            key = (activation.__name__, depth)
            norms[key], curves[key] = norm, hist["loss"]
            rows.append(
                (
                    activation.__name__,
                    depth,
                    f"{norm[0]:.2e}",
                    f"{norm[-1]:.2e}",
                    f"{norm[0] / norm[-1]:.2g}",
                    hist["loss"][0],
                    hist["loss"][-1],
                    f"{net.evaluate(X_test, y_test)['accuracy']:.3f}",
                )
            )

    print(f"digits, hidden layers of 32 units, SGD lr={lr}, batch 32, {epochs} epochs\n")
    print(
        table(
            [
                "activation",
                "hidden layers",
                "grad norm, layer 1",
                "grad norm, output",
                "ratio",
                "loss, epoch 1",
                f"loss, epoch {epochs}",
                "test acc",
            ],
            rows,
        )
    )

    def draw(axes):
        from matplotlib import colormaps

        colors = dict(zip(depths, colormaps["plasma"](np.linspace(0, 0.85, len(depths)))))
        for (name, depth), norm in norms.items():
            style = "-" if name == "ReLU" else "--"
            axes[0].plot(
                range(1, len(norm) + 1),
                norm,
                style,
                marker="o",
                ms=3,
                color=colors[depth],
                label=f"{name}, {depth} hidden",
            )
            axes[1].plot(range(1, epochs + 1), curves[name, depth], style, color=colors[depth])
        axes[0].set(
            xlabel="layer (1 = input side)",
            ylabel="|dW| at initialisation",
            yscale="log",
            title="gradient norm per layer (dashed: sigmoid)",
        )
        axes[0].legend(fontsize=7, ncol=2)
        axes[1].set(
            xlabel="epoch", ylabel="training loss", yscale="log", title="convergence (dashed: sigmoid)"
        )

    plot(args.out / "depth.png", draw)


if __name__ == "__main__":
    main()
