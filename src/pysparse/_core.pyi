"""Type stubs for the compiled core (csrc/bindings/). Keep in the same change."""

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

class SparseMatrix:
    @staticmethod
    def from_dense(a: npt.NDArray[np.float32], block_r: int = 1, block_c: int = 1) -> SparseMatrix: ...
    @staticmethod
    def from_arrays(
        shape: tuple[int, int],
        block: tuple[int, int],
        indptr: npt.NDArray[np.integer[Any]],
        indices: npt.NDArray[np.integer[Any]],
        data: npt.NDArray[np.float32],
    ) -> SparseMatrix: ...
    @staticmethod
    def from_dense_nm(a: npt.NDArray[np.float32], n: int, m: int) -> SparseMatrix: ...
    @staticmethod
    def from_arrays_nm(
        shape: tuple[int, int],
        n: int,
        m: int,
        values: npt.NDArray[np.float32],
        offsets: npt.NDArray[np.uint8],
    ) -> SparseMatrix: ...
    @property
    def format(self) -> str: ...  # "csr" | "bsr" | "nm" | "sell"
    @property
    def layout(self) -> str: ...  # as format, but "bsr" for CSR too (its storage is the 1x1 BSR layout)
    def to_sell(self) -> SparseMatrix: ...  # CSR only (ValueError otherwise)
    def to_csr(self) -> SparseMatrix: ...  # SELL only (ValueError otherwise)
    @property
    def row_of(self) -> npt.NDArray[np.int32] | None: ...  # SELL: original row of each lane (-1: none)
    @property
    def row_len(self) -> npt.NDArray[np.int32] | None: ...  # SELL: nonzeros of each lane
    @property
    def nm(self) -> tuple[int, int]: ...  # meaningful for N:M only
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def block(self) -> tuple[int, int]: ...
    @property
    def nblocks(self) -> int: ...
    @property
    def stored_values(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def index_dtype(self) -> str: ...
    @property
    def indptr(self) -> npt.NDArray[np.int64]: ...
    @property
    def indices(self) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]: ...
    @property
    def values(self) -> npt.NDArray[np.float32]: ...
    def to_dense(self) -> npt.NDArray[np.float32]: ...

def spmm(
    w: SparseMatrix,
    x: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
    kernel: str | None = None,
    *,
    activation: Literal["none", "relu", "relu6", "gelu_erf", "gelu_tanh"] = "none",
    residual: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def conv2d_shifted(
    w: SparseMatrix,
    x: npt.NDArray[np.float32],
    kernel_size: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    chunk: int,
    bias: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
    *,
    activation: Literal["none", "relu", "relu6", "gelu_erf", "gelu_tanh"] = "none",
    residual: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def linear(
    x: npt.NDArray[np.float32],
    w: SparseMatrix,
    bias: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
    kernel: str | None = None,
    *,
    activation: Literal["none", "relu", "relu6", "gelu_erf", "gelu_tanh"] = "none",
    residual: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def cpu_info() -> dict[str, Any]: ...
def get_isa() -> str: ...  # "avx512" | "avx2" | "neon" | "scalar"
def set_isa(name: str) -> None: ...  # an f32 ISA, or an int8 level (sets both)
def runnable_isas() -> list[str]: ...  # best first, scalar last
def kernels() -> list[dict[str, Any]]: ...

class _Testing:  # pysparse._core.testing: hooks for the tests, not the package's API
    @staticmethod
    def spmm_shifted(
        w: SparseMatrix,
        x: npt.NDArray[np.float32],
        n: int,
        bias: npt.NDArray[np.float32] | None = None,
        threads: int = 0,
    ) -> npt.NDArray[np.float32]: ...
    @staticmethod
    def threads_for(w: SparseMatrix, n: int, threads: int = 0) -> int: ...

testing: _Testing

# The transformer pieces between the Linears (csrc/bindings/transformer.cc).
def layer_norm(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32] | None,
    bias: npt.NDArray[np.float32] | None,
    eps: float,
    residual: npt.NDArray[np.float32] | None = None,
    out: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
) -> npt.NDArray[np.float32]: ...
def gelu(
    x: npt.NDArray[np.float32],
    approximate: str = "none",
    out: npt.NDArray[np.float32] | None = None,
    threads: int = 0,
) -> npt.NDArray[np.float32]: ...
def attention(
    q: npt.NDArray[np.float32],
    k: npt.NDArray[np.float32],
    v: npt.NDArray[np.float32],
    num_heads: int,
    mask: npt.NDArray[np.float32] | None = None,
    scale: float | None = None,
    threads: int = 0,
) -> npt.NDArray[np.float32]: ...
def transformer_kernels() -> list[dict[str, Any]]: ...  # name, isa, op, runnable, active
# int8 weights (csrc/bindings/qmatrix.cc; contract in csrc/qformats.h)
class QMatrix:
    @staticmethod
    def from_int8(
        q: npt.NDArray[np.int8], scales: npt.NDArray[np.float32], block_r: int = 8, format: str = "bsr_int8"
    ) -> QMatrix: ...
    @staticmethod
    def from_arrays(
        shape: tuple[int, int],
        block_r: int,
        indptr: npt.NDArray[np.integer[Any]],
        indices: npt.NDArray[np.integer[Any]],
        data: npt.NDArray[np.int8],
        scales: npt.NDArray[np.float32],
    ) -> QMatrix: ...
    @property
    def format(self) -> str: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def block(self) -> tuple[int, int]: ...
    @property
    def nblocks(self) -> int: ...
    @property
    def stored_values(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def indptr(self) -> npt.NDArray[np.int64] | None: ...
    @property
    def indices(self) -> npt.NDArray[np.int64]: ...
    @property
    def values(self) -> npt.NDArray[np.int8]: ...
    @property
    def scales(self) -> npt.NDArray[np.float32]: ...
    def to_int8(self) -> npt.NDArray[np.int8]: ...

def qlinear(
    x: npt.NDArray[np.float32],
    w: QMatrix,
    bias: npt.NDArray[np.float32] | None = None,
    relu: bool = False,
    threads: int = 0,
    kernel: str | None = None,
    *,
    activation: Literal["none", "relu", "relu6", "gelu_erf", "gelu_tanh"] = "none",
    residual: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]: ...
def qs8_quantize(x: npt.NDArray[np.float32], isa: str) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]: ...
def get_qisa() -> str: ...
def set_qisa(name: str) -> None: ...
def runnable_qisas() -> list[str]: ...
def qkernels() -> list[dict[str, Any]]: ...

# Depthwise convolution (bindings/dwconv.cc)
def dwconv2d(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    activation: str = "none",
    threads: int = 0,
    kernel: str | None = None,
    engine: str = "auto",
) -> npt.NDArray[np.float32]: ...
def dwconv_kernels() -> list[dict[str, Any]]: ...

# Direct dense convolution of network stems (bindings/dwconv.cc)
def conv2d_direct(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32] | None = None,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    activation: str = "none",
    threads: int = 0,
    kernel: str | None = None,
) -> npt.NDArray[np.float32]: ...
def conv_kernels() -> list[dict[str, Any]]: ...
