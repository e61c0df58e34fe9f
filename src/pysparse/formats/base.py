"""What every pysparse weight format is: ``SparseMatrixBase`` and the file-array spec.

A format class describes itself in one place (the registry in ``formats/__init__``
lists the classes): its ``tag`` and ``label``, how a dense weight packs into it
(``pack``), and how it is stored in a model file (``file_attrs``,
``to_file_arrays``, ``file_specs``, ``from_file_arrays``). Convert, export and the
runtime loop over the registry instead of branching on format names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._arrays import as_input, as_output

F32 = ("float32",)


@dataclass(frozen=True)
class ArraySpec:
    """What one array of a node in a model file must be."""

    required: bool
    dtypes: tuple[str, ...]
    shape: tuple[int | None, ...] | None  # None: any shape (rank <= the file's limit); None entries: any length


class SparseMatrixBase:
    """What every pysparse weight format offers."""

    _m: _core.SparseMatrix
    _last_conv_plan: Any = None  # ops.conv2d's last plan for this weight (see ops/conv.py)
    tag: ClassVar[str] = ""
    # Whether ops.conv2d may run this format's stride-1 convolutions directly on the padded
    # image (the shifted kernels are CSR / BSR ones; see ops/conv.py and shifted_source).
    shifted_conv: ClassVar[bool] = True
    # int8 weights (formats/int8.py) run through _core.qlinear instead of _core.linear.
    quantized: ClassVar[bool] = False
    format: ClassVar[str] = ""  # the same as tag (the name modules and reports have always used)

    def __init__(self) -> None:  # pragma: no cover - abstract
        raise TypeError("use CSRMatrix, BSRMatrix, NMMatrix or SELLMatrix")

    @classmethod
    def _wrap(cls, m: _core.SparseMatrix) -> Any:
        obj = cls.__new__(cls)
        obj._m = m
        return obj

    @property
    def shape(self) -> tuple[int, int]:
        return self._m.shape

    @property
    def block(self) -> tuple[int, int]:
        return self._m.block

    @property
    def nnz(self) -> int:
        """Stored values (for BSR, zeros inside kept blocks count)."""
        return self._m.stored_values

    @property
    def density(self) -> float:
        m, k = self.shape
        return self.nnz / (m * k) if m * k else 0.0

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (index pointer, indices, values)."""
        return self._m.nbytes

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def index_dtype(self) -> np.dtype:
        return np.dtype(self._m.index_dtype)

    @property
    def indptr(self) -> np.ndarray:
        return self._m.indptr

    @property
    def indices(self) -> np.ndarray:
        return self._m.indices

    @property
    def label(self) -> str:
        """A short name of the format with its parameters: 'csr', 'bsr(8,1)', 'nm(2:4)', 'sell'."""
        return self.tag

    def shifted_source(self) -> _core.SparseMatrix:
        """The CSR / BSR storage the direct convolution's offset matrix is built from."""
        return self._m

    def to_dense(self) -> np.ndarray:
        return self._m.to_dense()

    def __matmul__(self, x: Any) -> Any:
        xa, torch_in = as_input(x, "x")
        return as_output(_core.spmm(self._m, xa, None, 0), torch_in)

    def __repr__(self) -> str:
        m, k = self.shape
        extra = "" if self.tag == "csr" else f", block={self.block}"
        return (
            f"{type(self).__name__}(shape=({m}, {k}){extra}, nnz={self.nnz}, "
            f"density={self.density:.3f}, index_dtype={self.index_dtype})"
        )

    # The storage is immutable, so copies may share it: deepcopy of a model that
    # holds pysparse weights works and costs nothing.
    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self

    def __getstate__(self) -> Any:
        raise TypeError(
            f"{type(self).__name__} is not picklable by design; save models with pysparse.save"
        )

    # ------------------------------------------------------------------ the format's description
    @classmethod
    def pack(cls, w2d: np.ndarray, **params: Any) -> SparseMatrixBase:
        """A dense 2-D float32 weight in this format (``params``: the format's own, e.g. block=)."""
        raise NotImplementedError

    @classmethod
    def candidates(cls, w2d: np.ndarray, *, block: Any = None, conv: bool = False) -> list[SparseMatrixBase]:
        """The packings of a dense weight in this format worth timing (convert's candidates;
        ``block``: the one BSR block to try, ``conv``: the weight is a convolution's)."""
        return []

    def file_attrs(self) -> dict[str, Any]:
        """The node attributes (besides "format") a model file stores for this weight."""
        return {}

    def to_file_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a model file stores for this weight (contiguous copies)."""
        raise NotImplementedError

    @classmethod
    def file_specs(cls, attrs: dict[str, Any], rows: int, cols: int) -> dict[str, ArraySpec]:
        """What each file array must be, for a node with ``attrs`` and a (rows, cols) weight."""
        raise NotImplementedError

    @classmethod
    def from_file_arrays(
        cls, attrs: dict[str, Any], arrays: dict[str, np.ndarray], rows: int, cols: int
    ) -> SparseMatrixBase:
        """The weight from its file arrays (checked against file_specs); ValueError on bad data."""
        raise NotImplementedError


def file_copies(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Contiguous copies that share no memory with the weight (the file writer owns them)."""
    return {k: np.ascontiguousarray(v).copy() for k, v in arrays.items()}
