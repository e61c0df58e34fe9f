"""Fuzz target: model file bytes -> pysparse.load -> run the model on a small input.

Contract (issue 16): ``load`` raises only ModelFileError (MemoryError tolerated);
running a loaded model on an input of its declared shape raises nothing but
ValueError / TypeError / MemoryError; nothing crashes or hangs (libFuzzer's
-timeout and -rss_limit_mb catch those). Anything else is a finding: the target
re-raises it, libFuzzer stops and writes the input as crash-<sha1>.

Coverage-guided by atheris over pysparse's Python code (the loader and the
runtime's validation). Half of the mutations are structure-aware: they parse the
safetensors container, change one value of the JSON header or graph (a number to
a boundary value, a string to another op or name, a list shortened or doubled)
and write the container back with a consistent header length, so mutants get
past the container checks into the graph validation and the dry run; the other
half are libFuzzer's byte mutations.

Run: .ci/fuzz (CI), or by hand
    python tests/fuzz/fuzz_load.py -max_total_time=60 build/fuzz/load tests/fuzz/corpus
``check(data)`` is the one-input oracle that tests/fuzz/test_fuzz_regressions.py reuses.
"""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile

import numpy as np

from _harness import atheris, fuzz, import_pysparse

ps = import_pysparse(__name__ == "__main__")
ModelFileError = ps.io.ModelFileError

_TMP = os.path.join(tempfile.gettempdir() if not os.path.isdir("/dev/shm") else "/dev/shm", f"pysparse-fuzz-{os.getpid()}.pspz")
RUN_ERRORS = (ValueError, TypeError, MemoryError)


def _inputs(model, rng):
    """Small inputs of the declared shapes (free dims: 1 or 2), or None if they are not small."""
    xs = []
    batch = int(rng.integers(1, 3))
    for shape, dtype in zip(model.input_shapes, model.input_dtypes):
        s = tuple(batch if d is None else d for d in shape)
        if int(np.prod(s, dtype=np.float64)) > 1 << 20:
            return None
        if dtype == "int64":  # token ids / masks: small ints, mostly valid, sometimes not
            xs.append(rng.integers(0, 3, s).astype(np.int64))
        else:
            xs.append(rng.standard_normal(s).astype(np.float32))
    return xs


def check(data: bytes) -> str:
    """Run one input through the contract; returns the outcome, raises on a finding."""
    with open(_TMP, "wb") as f:
        f.write(data)
    try:
        model = ps.load(_TMP)
    except ModelFileError:
        return "rejected"
    except MemoryError:
        return "rejected (MemoryError)"
    rng = np.random.default_rng(len(data))
    xs = _inputs(model, rng)
    if xs is None:
        return "loaded (inputs too large to run)"
    try:
        with np.errstate(all="ignore"):
            model(*xs)
    except RUN_ERRORS:
        return "loaded, run raised a documented error"
    return "loaded and ran"


# ------------------------------------------------------------------ structure-aware mutation

_OPS = ["linear", "conv2d", "relu", "gelu", "tanh", "sigmoid", "softmax", "add", "sub", "mul", "div", "reshape",
        "flatten", "permute", "transpose", "cat", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "mean",
        "layer_norm", "batch_norm", "constant", "size", "squeeze", "unsqueeze", "identity", "nope",
        "embedding", "position_embedding", "attention_mask", "attention", "masked_mean", "l2_normalize"]
_INTS = [0, 1, -1, 2, 3, 7, 8, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**40, 2**62, 2**63, 2**64, -2**63]
_FLOATS = [0.0, -0.0, 1e-30, 1e30, 0.5, -1.0]


def _split(data: bytes):
    if len(data) < 8:
        return None
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 1 << 20:
        return None
    try:
        header = json.loads(data[8 : 8 + n])
        graph = json.loads(header["__metadata__"]["pysparse.graph"])
    except Exception:  # noqa: BLE001 - not a parsable model file: fall back to byte mutation
        return None
    return header, graph, data[8 + n :]


def _join(header, graph, body: bytes) -> bytes:
    header["__metadata__"]["pysparse.graph"] = json.dumps(graph, separators=(",", ":"))
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + body


def _slots(obj, path=()):
    """Every (container, key) in a JSON value."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _slots(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _slots(v, path + (i,))


def _mutate_value(v, r: random.Random):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return r.choice(_INTS + [v + 1, v - 1, v * 2, -v])
    if isinstance(v, float):
        return r.choice(_FLOATS + [v * 2, -v])
    if isinstance(v, str):
        return r.choice(_OPS + ["", v + v, "x", v[:-1]])
    if isinstance(v, list):
        choice = r.randrange(4)
        if choice == 0 or not v:
            return v + v
        if choice == 1:
            return v[:-1]
        if choice == 2:
            return v + [r.choice(_INTS)]
        return list(reversed(v))
    if isinstance(v, dict):
        if v and r.random() < 0.5:
            w = dict(v)
            w.pop(r.choice(list(w)))
            return w
        return {**v, r.choice(["stride", "padding", "dilation", "kernel_size", "dim", "groups", "block", "nm"]): r.choice(_INTS)}
    return r.choice(_INTS)


def mutate_structured(data: bytes, seed: int) -> bytes | None:
    parts = _split(data)
    if parts is None:
        return None
    header, graph, body = parts
    r = random.Random(seed)
    for _ in range(r.randint(1, 3)):
        target = graph if r.random() < 0.8 else header
        slots = [s for s in _slots(target) if not (s[0] is header and s[1] == "__metadata__")]
        if not slots:
            break
        obj, key = r.choice(slots)
        obj[key] = _mutate_value(obj[key], r)
    try:
        return _join(header, graph, body)
    except Exception:  # noqa: BLE001 - the header lost its metadata: use the bytes as they are
        return None


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    if seed % 2 == 0:
        out = mutate_structured(data, seed)
        if out is not None and len(out) <= max(max_size, len(data)):
            return out
    return atheris.Mutate(data, max_size)


if __name__ == "__main__":
    fuzz("fuzz_load", check, 2000, custom_mutator=custom_mutator)
