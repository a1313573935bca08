"""One forward + backward pass of 784-256-128-10 (ReLU, softmax cross-entropy, float32) at batch 1,
32 and 256: fastbp's net.loss_and_grad against fastbp.reference.loss_and_grad on the same batch.

    .venv/bin/python -m pytest bench/bench_loss_and_grad.py --benchmark-only -q

Each batch size is one pytest-benchmark group, so the two implementations sit side by side.
"""

import numpy as np
import pytest

from fastbp import reference

BATCHES = (1, 32, 256)


@pytest.mark.parametrize("batch", BATCHES)
def test_fastbp_loss_and_grad(benchmark, make_net, make_data, batch):
    net = make_net()
    X, y = make_data(batch)
    net.loss_and_grad(X, y)  # compile or load the kernels outside the timing
    benchmark.group = f"loss_and_grad 784-256-128-10 batch {batch}"
    benchmark.extra_info["batch"] = batch
    loss = benchmark(net.loss_and_grad, X, y)
    assert np.isfinite(loss)


@pytest.mark.parametrize("batch", BATCHES)
def test_reference_loss_and_grad(benchmark, make_net, make_data, batch):
    net = make_net()
    X, y = make_data(batch)
    weights = [layer.W.copy() for layer in net.dense_layers]
    biases = [layer.b.copy() for layer in net.dense_layers]
    specs, loss_spec = net.specs, net.loss
    benchmark.group = f"loss_and_grad 784-256-128-10 batch {batch}"
    benchmark.extra_info["batch"] = batch
    loss, dweights, _ = benchmark(reference.loss_and_grad, specs, loss_spec, weights, biases, X, y)
    # Same network, same batch: the two must agree (a check of the setup, not of speed).
    assert loss == pytest.approx(net.loss_and_grad(X, y), rel=1e-4)
    assert dweights[0].dtype == np.float32
