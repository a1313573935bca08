"""fastbp: fast backpropagation for dense neural networks."""

from fastbp import callbacks, optim, reference, schedules
from fastbp.gradcheck import gradcheck
from fastbp.layers import (
    ELU,
    GELU,
    Dense,
    Dropout,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Tanh,
)
from fastbp.losses import L1, MSE, BinaryCrossEntropy, Huber, SoftmaxCrossEntropy
from fastbp.network import Sequential

__version__ = "0.1.0"

__all__ = [
    "BinaryCrossEntropy", "Dense", "Dropout", "ELU", "GELU", "Huber", "Identity", "L1", "LeakyReLU",
    "MSE", "ReLU", "Sequential", "Sigmoid", "SiLU", "SoftmaxCrossEntropy", "Softplus", "Tanh",
    "__version__", "callbacks", "gradcheck", "optim", "reference", "schedules",
]
