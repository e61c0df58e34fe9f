"""The model file's container: a strict safetensors reader and an atomic writer.

The file is a safetensors file: an 8-byte little-endian header length, a JSON
header (array names, dtypes, shapes, byte ranges, and ``__metadata__`` holding
the graph JSON, the format version and optionally the tokenizer.json text), then the raw
little-endian arrays.
``read_file`` parses it itself with every bound checked before anything is
allocated (no torch, no safetensors needed to read); ``write_file`` writes next
to the target and renames into place.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from typing import Any

import numpy as np

from .schema import FORMAT_NAME, FORMAT_VERSION, ModelFileError

__all__ = ["read_file", "read_model", "write_file", "check_tokenizer_json", "MAX_FILE_BYTES", "MAX_HEADER_BYTES", "MAX_TENSORS"]

MAX_FILE_BYTES = 1 << 34  # 16 GiB
MAX_HEADER_BYTES = 64 << 20  # safetensors itself caps headers at 100 MB
MAX_TENSORS = 1_000_000

_META_FORMAT = "pysparse.format"
_META_VERSION = "pysparse.version"
_META_GRAPH = "pysparse.graph"
# Optional, added with the BERT export (readers before it ignore unknown metadata keys).
_META_TOKENIZER = "pysparse.tokenizer"
MAX_TOKENIZER_BYTES = 32 << 20  # BERT's WordPiece tokenizer.json is 0.7 MB; large multilingual ones ~17 MB

# safetensors dtype codes this format uses.
_DTYPES = {
    "F32": np.dtype("<f4"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),  # int8 weights (bsr_int8, dense_int8)
}


def _strict_json(text: str | bytes, what: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise ModelFileError(f"{what} has a duplicated key")
        return d

    def no_constants(name: str) -> Any:
        raise ModelFileError(f"{what} holds {name}, which is not JSON")

    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except ModelFileError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{what} is not valid JSON ({e})") from None
    except RecursionError:
        raise ModelFileError(f"{what} is nested too deeply") from None
    except ValueError as e:  # an integer of more than sys.get_int_max_str_digits() digits
        raise ModelFileError(f"{what} holds a number no model file needs ({e})") from None


def _parse(buf: bytes, what: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, arrays) of a safetensors byte string, every bound checked."""
    if len(buf) < 8:
        raise ModelFileError(f"{what} is truncated: {len(buf)} bytes, not even a header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if n < 2 or n > MAX_HEADER_BYTES or 8 + n > len(buf):
        raise ModelFileError(
            f"{what}: header length {n} does not fit the file of {len(buf)} bytes (truncated or not a model file)"
        )
    header = _strict_json(buf[8 : 8 + n], f"{what} header")
    if not isinstance(header, dict):
        raise ModelFileError(f"{what} header must be a JSON object")
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ModelFileError(f"{what} has no string metadata; it is not a pysparse model file")
    if len(header) > MAX_TENSORS:
        raise ModelFileError(f"{what} declares {len(header)} arrays (at most {MAX_TENSORS})")
    data = memoryview(buf)[8 + n :]
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(f"{what}: array {name!r:.80} needs exactly dtype, shape and data_offsets")
        dtype = _DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dtype is None:
            raise ModelFileError(f"{what}: array {name!r:.80} has dtype {info['dtype']!r:.20}; allowed {sorted(_DTYPES)}")
        shape, offs = info["shape"], info["data_offsets"]
        if (
            not isinstance(shape, list)
            or len(shape) > 8
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)
        ):
            raise ModelFileError(f"{what}: array {name!r:.80} has a bad shape {shape!r:.80}")
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= len(data)
        ):
            raise ModelFileError(f"{what}: array {name!r:.80} has byte range {offs!r:.80} outside the data")
        nbytes = math.prod(shape) * dtype.itemsize
        if offs[1] - offs[0] != nbytes:
            raise ModelFileError(
                f"{what}: array {name!r:.80} of shape {shape} needs {nbytes} bytes but spans {offs[1] - offs[0]}"
            )
        spans.append((offs[0], offs[1], name, dtype, tuple(shape)))
    spans.sort()
    end = 0
    for b, e, name, _, _ in spans:
        if b != end:
            raise ModelFileError(f"{what}: array {name!r:.80} overlaps another or leaves a gap")
        end = e
    if end != len(data):
        raise ModelFileError(f"{what}: {len(data) - end} bytes after the last array (corrupted or appended to)")
    arrays = {
        name: np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=b).reshape(shape).astype(dtype.name)
        for b, _, name, dtype, shape in spans
    }
    return meta, arrays


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(graph, arrays) of a model file, with the container and metadata checked (not the graph)."""
    graph, arrays, _ = read_model(path)
    return graph, arrays


def read_model(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    """(graph, arrays, extras) of a model file; extras holds what rides along with the graph
    (``"tokenizer"``: the tokenizer.json text), each checked to be a bounded string."""
    p = os.fspath(path)
    try:
        # Non-blocking open: a FIFO opens at once (and is refused below) instead of waiting for a writer.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise ModelFileError(f"{p} is a directory, not a model file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileError(f"{p} is a directory, not a model file")
        raise ModelFileError(f"{p} is not a regular file (a pipe, device or socket); save the model to a file")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > MAX_FILE_BYTES:
            raise ModelFileError(f"{p}: {st.st_size} bytes is larger than a model file may be ({MAX_FILE_BYTES})")
        # read(n) allocates n bytes up front: ask for what fstat() saw (+1 to notice a
        # file that grew since), never for the 16 GiB bound (qemu-user commits it all).
        buf = f.read(st.st_size + 1)
    if len(buf) > MAX_FILE_BYTES:
        raise ModelFileError(f"{p}: larger than a model file may be ({MAX_FILE_BYTES} bytes)")
    meta, arrays = _parse(buf, p)
    if meta.get(_META_FORMAT) != FORMAT_NAME:
        raise ModelFileError(f"{p} is not a pysparse model file (metadata {_META_FORMAT!r} missing)")
    version = meta.get(_META_VERSION)
    if version != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{p} has format version {version!r:.20}; this pysparse reads version {FORMAT_VERSION}: "
            "save the model again with this version or upgrade pysparse"
        )
    graph = _strict_json(meta.get(_META_GRAPH, ""), f"{p} graph")
    extras: dict[str, str] = {}
    tok = meta.get(_META_TOKENIZER)
    if tok is not None:
        extras["tokenizer"] = check_tokenizer_json(tok, p)
    return graph, arrays, extras


def check_tokenizer_json(tok: Any, where: str) -> str:
    """A tokenizer carried by a model file: a JSON object's text of bounded size (parsed by
    ``tokenizers`` only when text is encoded)."""
    if not isinstance(tok, str) or not 2 <= len(tok) <= MAX_TOKENIZER_BYTES or not tok.lstrip().startswith("{"):
        size = len(tok) if isinstance(tok, str) else type(tok).__name__
        raise ModelFileError(f"{where}: the tokenizer must be a tokenizer.json text of at most "
                             f"{MAX_TOKENIZER_BYTES} characters, got {size}")
    return tok


def write_file(path: str | os.PathLike[str], graph: dict[str, Any], arrays: dict[str, np.ndarray], *,
               tokenizer: str | None = None) -> None:
    """Write a graph and its arrays as a model file (no checks: ``save`` checks before calling this).

    The file is written next to ``path`` and renamed into place, so a failed
    write never leaves a half file under the final name.
    """
    from safetensors.numpy import save_file

    meta = {
        _META_FORMAT: FORMAT_NAME,
        _META_VERSION: str(FORMAT_VERSION),
        _META_GRAPH: json.dumps(graph, separators=(",", ":"), allow_nan=False),
    }
    if tokenizer is not None:
        meta[_META_TOKENIZER] = tokenizer
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
