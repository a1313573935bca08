"""Compiled kernels. The Python API never loops over elements; everything here does."""
