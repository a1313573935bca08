"""fastbp: fast backpropagation for dense neural networks.

Layers, losses, Sequential, the optimizers (fb.optim), schedules, callbacks, save/load, gradcheck
and the NumPy reference (fb.reference). Thread control: fb.set_num_threads / FASTBP_NUM_THREADS.
"""

from fastbp import callbacks, datasets, io, optim, schedules
from fastbp.clip import clip_grad_norm, clip_grad_value
from fastbp.cuda import to_numpy
from fastbp.gradcheck import gradcheck
from fastbp.io import load, load_checkpoint, save
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
from fastbp.precompile import precompile
from fastbp.threads import apply_environment as _apply_thread_environment
from fastbp.threads import get_num_threads, set_num_threads
from fastbp.train import History

__version__ = "0.1.0"

_apply_thread_environment()


def __getattr__(name):
    # fb.reference imports scipy.special (~0.1 s): loaded on first use, not with fastbp.
    if name == "reference":
        import importlib

        return importlib.import_module("fastbp.reference")
    if name == "from_torch":  # fastbp.interop imports torch only when called
        from fastbp.interop import from_torch

        return from_torch
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")


__all__ = [
    "BinaryCrossEntropy",
    "Dense",
    "Dropout",
    "ELU",
    "GELU",
    "History",
    "Huber",
    "Identity",
    "L1",
    "LeakyReLU",
    "MSE",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Softplus",
    "Tanh",
    "__version__",
    "callbacks",
    "clip_grad_norm",
    "clip_grad_value",
    "datasets",
    "get_num_threads",
    "gradcheck",
    "io",
    "load",
    "load_checkpoint",
    "optim",
    "precompile",
    "reference",
    "save",
    "schedules",
    "set_num_threads",
    "from_torch",
    "to_numpy",
]
