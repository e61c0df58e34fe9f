"""The Python face of the kernels: spmm, linear and conv2d for numpy arrays and torch tensors,
and their prepared plans (checked once, then called per input).

Everything here is numpy + ``_core`` only (no torch import): the torch-free
runtime calls the same functions. ``matmul`` holds the products, ``conv`` the
convolution, ``dense`` the dense-weight convolution, ``geometry`` the sizes.
"""

from __future__ import annotations

from .conv import Conv2dPlan, conv2d
from .geometry import conv_output_size
from .matmul import LinearPlan, linear, spmm

__all__ = ["Conv2dPlan", "LinearPlan", "conv2d", "conv_output_size", "linear", "spmm"]
