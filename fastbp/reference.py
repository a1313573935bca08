"""Textbook backpropagation in plain NumPy: the oracle the kernels are tested against, and the
baseline they are benchmarked against.

Written from the definitions (torch.nn.functional's, to the last threshold), not from the kernels,
so that the two can check each other. Readable top to bottom: every activation sits beside its
derivative, every loss returns its value beside its gradient, and backprop is the chain rule walked
from the output back to the input. No validation here: `Sequential` validates.

Shapes: X is (n, in); a Dense layer's W is (in, out) and b is (out,), so a layer computes X @ W + b.
The arithmetic keeps the dtype of its inputs (float32 in, float32 math).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, expit

from fastbp.layers import Activation, Dense

# ---------------------------------------------------------------------------------------------
# Activations: forward f(z) and derivative f'(z). A derivative gets both z and a = f(z) and uses
# whichever is cheaper; `param` is the activation's one setting (slope, alpha), unused elsewhere.
# ---------------------------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SOFTPLUS_THRESHOLD = 20.0  # torch's default: above it softplus is the identity


def identity(z, param):
    return z


def identity_derivative(z, a, param):
    return 1.0


def relu(z, param):
    return np.maximum(z, 0)


def relu_derivative(z, a, param):
    # 0 at z == 0: the subgradient torch uses.
    return (z > 0).astype(z.dtype)


def leaky_relu(z, param):
    return np.where(z > 0, z, param * z)


def leaky_relu_derivative(z, a, param):
    # negative_slope at z == 0, as torch (z > 0 ? 1 : slope).
    return np.where(z > 0, 1.0, param).astype(z.dtype)


def elu(z, param):
    # min() keeps expm1 from overflowing in the branch np.where throws away.
    return np.where(z > 0, z, param * np.expm1(np.minimum(z, 0)))


def elu_derivative(z, a, param):
    # alpha * exp(z) for z <= 0, so alpha at z == 0, as torch.
    return np.where(z > 0, 1.0, param * np.exp(np.minimum(z, 0))).astype(z.dtype)


def gelu(z, param):
    return 0.5 * z * (1.0 + erf(z / _SQRT2))


def gelu_derivative(z, a, param):
    # d/dz [z Phi(z)] = Phi(z) + z phi(z).
    return 0.5 * (1.0 + erf(z / _SQRT2)) + z * _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def silu(z, param):
    return z * expit(z)


def silu_derivative(z, a, param):
    s = expit(z)
    return s * (1.0 + z * (1.0 - s))


def sigmoid(z, param):
    return expit(z)


def sigmoid_derivative(z, a, param):
    return a * (1.0 - a)


def tanh(z, param):
    return np.tanh(z)


def tanh_derivative(z, a, param):
    return 1.0 - a * a


def softplus(z, param):
    # log(1 + exp(z)), and z itself strictly above the threshold (20 is still log1p(exp(20))).
    below = np.minimum(z, _SOFTPLUS_THRESHOLD)  # keeps exp from overflowing in the unused branch
    return np.where(z > _SOFTPLUS_THRESHOLD, z, np.log1p(np.exp(below)))


def softplus_derivative(z, a, param):
    return np.where(z > _SOFTPLUS_THRESHOLD, 1.0, expit(z)).astype(z.dtype)


ACTIVATION_FUNCTIONS = {
    "identity": identity,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softplus": softplus,
}
ACTIVATION_DERIVATIVES = {
    "identity": identity_derivative,
    "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative,
    "elu": elu_derivative,
    "gelu": gelu_derivative,
    "silu": silu_derivative,
    "sigmoid": sigmoid_derivative,
    "tanh": tanh_derivative,
    "softplus": softplus_derivative,
}

# ---------------------------------------------------------------------------------------------
# Losses: (mean loss, dL/d(out)) from the network's raw output. `param` is Huber's delta.
# MSE, L1, Huber and BCE average over all elements, cross-entropy over the batch (torch's default).
# ---------------------------------------------------------------------------------------------


def mse(out, y, param):
    d = out - y
    return np.mean(d * d), (2.0 / d.size) * d


def l1(out, y, param):
    d = out - y
    # np.sign(0) == 0: the derivative at 0 is 0, as torch.
    return np.mean(np.abs(d)), np.sign(d) / d.size


def huber(out, y, delta):
    d = out - y
    small = np.abs(d) < delta
    value = np.where(small, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
    return np.mean(value), np.clip(d, -delta, delta) / d.size


def binary_cross_entropy(out, y, param):
    # -[y log s(z) + (1 - y) log(1 - s(z))] = max(z, 0) - z y + log(1 + exp(-|z|)): never overflows.
    value = np.maximum(out, 0) - out * y + np.log1p(np.exp(-np.abs(out)))
    return np.mean(value), (expit(out) - y) / out.size


def softmax_cross_entropy(out, y, param):
    # y holds integer labels, shape (n,). loss_i = logsumexp(z_i) - z_i[y_i].
    n = out.shape[0]
    shifted = out - out.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(n)
    value = np.mean(log_norm - shifted[rows, y])
    grad = np.exp(shifted - log_norm[:, None])  # softmax(z)
    grad[rows, y] -= 1.0
    return value, grad / n


LOSS_FUNCTIONS = {
    "mse": mse,
    "l1": l1,
    "huber": huber,
    "binary_cross_entropy": binary_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def predict_proba_from_output(loss, out):
    """Probabilities from the network's output (n, k): sigmoid for BinaryCrossEntropy (per column),
    softmax over each row for SoftmaxCrossEntropy. Same dtype as `out`."""
    if loss.name == "binary_cross_entropy":
        return expit(out)
    if loss.name == "softmax_cross_entropy":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(f"the {loss.name} loss defines no probabilities")


# ---------------------------------------------------------------------------------------------
# Forward and backward passes.
# ---------------------------------------------------------------------------------------------


def _layer_forward(layer, A, weights, biases, k):
    """Output of one layer on input A; k is the index of its W and b if it is a Dense layer."""
    if isinstance(layer, Dense):
        return A @ weights[k] + biases[k]
    if isinstance(layer, Activation):
        return ACTIVATION_FUNCTIONS[layer.name](A, layer.param)
    return A  # Dropout is the identity outside training, and the reference never drops.


def _dense_indices(specs):
    """For each spec, the index of its W and b among the Dense layers, or None."""
    indices, k = [], 0
    for layer in specs:
        indices.append(k if isinstance(layer, Dense) else None)
        k += isinstance(layer, Dense)
    return indices


def forward(specs, weights, biases, X):
    """The network's raw output (n, out) on X (n, in): logits for the cross-entropy losses.

    specs: layer specs in order; weights[k] (in, out) and biases[k] (out,) belong to the k-th Dense.
    Dropout is the identity. The dtype is X's (and the parameters', which should match)."""
    A = X
    for layer, k in zip(specs, _dense_indices(specs), strict=True):
        A = _layer_forward(layer, A, weights, biases, k)
    return A


def _targets(loss, y, out):
    """y as the loss needs it: integer labels (n,), or real targets in out's shape and dtype."""
    if loss.integer_targets:
        return np.asarray(y).astype(np.intp).reshape(-1)
    return np.asarray(y, dtype=out.dtype).reshape(out.shape)


def loss_and_grad(specs, loss, weights, biases, X, y, l1=0.0, l2=0.0):
    """Mean loss on the batch (X, y) and its gradient with respect to every W and b.

    X: (n, in) float; y: (n, k) real targets ((n,) when k == 1) or, for SoftmaxCrossEntropy,
    integer labels (n,). The penalty l1 * sum|W| + 0.5 * l2 * sum W^2 over the weights (not the
    biases) is added to the loss. Returns (loss: float, dweights: list of (in, out) arrays,
    dbiases: list of (out,) arrays), in the parameters' dtype.
    """
    indices = _dense_indices(specs)

    # Forward, keeping every layer's input: inputs[i] enters specs[i], inputs[-1] is the output.
    # For an activation at i, inputs[i] is its pre-activation z and inputs[i + 1] its output f(z).
    inputs = [X]
    for layer, k in zip(specs, indices, strict=True):
        inputs.append(_layer_forward(layer, inputs[-1], weights, biases, k))

    value, upstream = LOSS_FUNCTIONS[loss.name](inputs[-1], _targets(loss, y, inputs[-1]), loss.param)

    # Backward: `upstream` is dL/d(output of layer i) on entry, dL/d(input of layer i) on exit.
    dweights, dbiases = [None] * len(weights), [None] * len(biases)
    for i in reversed(range(len(specs))):
        layer, k = specs[i], indices[i]
        if isinstance(layer, Activation):
            upstream = upstream * ACTIVATION_DERIVATIVES[layer.name](inputs[i], inputs[i + 1], layer.param)
        elif isinstance(layer, Dense):
            dweights[k] = inputs[i].T @ upstream
            dbiases[k] = upstream.sum(axis=0)
            if i > 0:  # nothing before the first layer needs dL/dX
                upstream = upstream @ weights[k].T

    if l1 or l2:
        for W, dW in zip(weights, dweights, strict=True):
            value = value + l1 * np.abs(W).sum() + 0.5 * l2 * (W * W).sum()
            dW += l1 * np.sign(W) + l2 * W
    return float(value), dweights, dbiases


# ---------------------------------------------------------------------------------------------
# Training: what a careful NumPy programmer writes.
# ---------------------------------------------------------------------------------------------


def _sgd(params, lr):
    def step(grads):
        for p, g in zip(params, grads, strict=True):
            p -= lr * g

    return step


def _adam(params, lr, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam's update (no weight decay, no amsgrad), in place on `params`."""
    beta1, beta2 = betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0

    def step(grads):
        nonlocal t
        t += 1
        step_size = lr / (1.0 - beta1**t)
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
        for p, g, m_, v_ in zip(params, grads, m, v, strict=True):
            m_ += (1.0 - beta1) * (g - m_)  # torch's lerp
            v_ *= beta2
            v_ += (1.0 - beta2) * g * g
            p -= step_size * m_ / (np.sqrt(v_) / bias_correction2_sqrt + eps)

    return step


def train(
    specs,
    loss,
    weights,
    biases,
    X,
    y,
    *,
    epochs=1,
    batch_size=32,
    lr=0.01,
    optimizer="sgd",
    shuffle=True,
    seed=0,
    l1=0.0,
    l2=0.0,
):
    """Mini-batch gradient descent, updating the `weights` and `biases` arrays in place.

    X (n, in) and y as for `loss_and_grad`. optimizer: "sgd" (p -= lr * g) or "adam" (torch's
    Adam with betas (0.9, 0.999), eps 1e-8). Each epoch visits the samples in a fresh permutation
    from default_rng(seed) when shuffle, in order otherwise; the last, partial batch is used.
    Dropout layers are the identity. Returns each epoch's mean loss (the batch losses weighted by
    batch size, measured before each batch's update) as a list of floats.
    """
    params = list(weights) + list(biases)
    step = {"sgd": _sgd, "adam": _adam}[optimizer](params, lr)
    rng = np.random.default_rng(seed)
    n = len(X)
    history = []
    for _ in range(epochs):
        if shuffle:
            order = rng.permutation(n)
            Xe, ye = X[order], y[order]  # one copy per epoch; the batches below are views
        else:
            Xe, ye = X, y
        total = 0.0
        for start in range(0, n, batch_size):
            Xb, yb = Xe[start : start + batch_size], ye[start : start + batch_size]
            value, dweights, dbiases = loss_and_grad(specs, loss, weights, biases, Xb, yb, l1, l2)
            step(dweights + dbiases)
            total += value * len(Xb)
        history.append(total / n)
    return history
