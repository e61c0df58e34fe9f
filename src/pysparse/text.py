"""Text -> sentence embeddings with a loaded model file that carries its tokenizer, torch-free.

    import pysparse as ps
    from pysparse import text
    m = ps.load("minilm.pspz")            # saved with ps.save(bert, ..., tokenizer=tok)
    e = text.encode(m, ["a sentence", "another one"], batch_size=32)   # (2, hidden), unit rows

``encode`` tokenizes with the file's tokenizer.json (the optional ``tokenizers``
package, imported only here), pads each batch to its longest sentence, truncates
to the tokenizer's own limit or the model's position table (or ``max_length``), runs the
model and returns mean-pooled, L2-normalised embeddings as sentence-transformers
computes them: the file's ``sentence_embedding`` output when it has one, else
pooled from ``last_hidden_state``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .runtime import Model, ModelFileError

__all__ = ["encode", "tokenizer", "tokenizer_json"]

MAX_BATCH = 1 << 16
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise ImportError("pysparse.text needs the tokenizers package: pip install tokenizers "
                          "(or pip install 'pysparse[transformers]')") from None
    return tokenizers


def tokenizer_json(tok: Any) -> str:
    """The tokenizer.json text of ``tok``: a ``tokenizers.Tokenizer``, a transformers fast tokenizer,
    the path of a tokenizer.json file or of the folder holding one, or the JSON text itself."""
    backend = getattr(tok, "backend_tokenizer", None)  # transformers' PreTrainedTokenizerFast
    if backend is not None:
        tok = backend
    if hasattr(tok, "to_str") and callable(tok.to_str):
        text = tok.to_str()
    elif isinstance(tok, (str, os.PathLike)) and not str(tok).lstrip().startswith("{"):
        path = os.fspath(tok)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(path):
            raise ValueError(f"tokenizer: no tokenizer.json at {path}; pass a fast tokenizer or the file's path")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    elif isinstance(tok, str):
        text = tok
    else:
        raise TypeError(f"tokenizer must be a tokenizers.Tokenizer, a fast transformers tokenizer or a path to "
                        f"tokenizer.json, got {type(tok).__name__}")
    try:
        _tokenizers().Tokenizer.from_str(text)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - tokenizers raises its own Exception type
        raise ValueError(f"tokenizer: not a valid tokenizer.json ({str(e).splitlines()[0][:200]})") from None
    return text


def _table_sizes(model: Model) -> dict[str, int]:
    """num_embeddings of the model's embedding tables, by the graph input they read."""
    sizes = {}
    for n in model.graph["nodes"]:
        if n["op"] == "position_embedding":
            sizes["positions"] = n["attrs"]["num_embeddings"]
        elif n["op"] == "embedding" and n.get("inputs", [None])[0] in _INPUTS:
            sizes[n["inputs"][0]] = n["attrs"]["num_embeddings"]
    return sizes


def tokenizer(model: Model) -> Any:
    """The model file's tokenizer (a ``tokenizers.Tokenizer``), padding to the longest sentence of a
    batch and truncating to what the model's position table holds. Built once per model."""
    cached = getattr(model, "_pysparse_text_tokenizer", None)
    if cached is not None:
        return cached
    if not isinstance(model, Model):
        raise TypeError(f"model must be a loaded pysparse model (ps.load), got {type(model).__name__}")
    if model.tokenizer_json is None:
        raise ValueError("this model file carries no tokenizer; save it with ps.save(..., tokenizer=your_tokenizer)")
    try:
        tok = _tokenizers().Tokenizer.from_str(model.tokenizer_json)
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"the model file's tokenizer does not parse ({str(e).splitlines()[0][:200]})") from None
    sizes = _table_sizes(model)
    table = sizes.get("positions")
    if table is None:
        raise ValueError("this model has no position table (not a BERT file); pysparse.text encodes BERT files")
    trunc = tok.truncation
    limit = min(table, int(trunc["max_length"])) if trunc and trunc.get("max_length") else table
    tok.enable_truncation(max_length=limit)
    pad = tok.padding or {}
    tok.enable_padding(pad_id=int(pad.get("pad_id", 0)), pad_type_id=int(pad.get("pad_type_id", 0)),
                       pad_token=str(pad.get("pad_token", "[PAD]")))
    vocab = sizes.get("input_ids")
    if vocab is not None and tok.get_vocab_size(with_added_tokens=True) > vocab:
        raise ModelFileError(f"the model file's tokenizer has {tok.get_vocab_size(with_added_tokens=True)} tokens "
                             f"but the model's vocabulary only {vocab}")
    model._pysparse_text_limits = (limit, table)  # type: ignore[attr-defined]
    model._pysparse_text_tokenizer = tok  # type: ignore[attr-defined]
    return tok


def _pool(states: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[:, :, None]
    pooled = (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), np.float32(1e-9))
    norm = np.sqrt(np.square(pooled, dtype=np.float64).sum(axis=1, keepdims=True))
    return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)


def encode(model: Model, sentences: str | Sequence[str], batch_size: int = 32, max_length: int | None = None
           ) -> np.ndarray:
    """(N, hidden) float32: one unit-length, mean-pooled embedding per sentence (a str gives (1, hidden)).

    Texts are cut at ``max_length`` tokens: by default the tokenizer.json's own truncation (128 in
    all-MiniLM-L6-v2's file), else the model's position table; sentence-transformers cuts that
    model at 256, so pass ``max_length=256`` to match it on longer texts."""
    if isinstance(sentences, str):
        sentences = [sentences]
    if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a str or a list of str")
    if not sentences:
        raise ValueError("sentences is empty: pass at least one sentence")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be an int in [1, {MAX_BATCH}], got {batch_size!r}")
    names = model.input_names
    if "input_ids" not in names or not set(names) <= set(_INPUTS):
        raise ValueError(f"model inputs {names} are not a BERT file's {list(_INPUTS)}")
    outputs = model.output_names
    if "sentence_embedding" in outputs:
        which = outputs.index("sentence_embedding")
    elif "last_hidden_state" in outputs:
        which = outputs.index("last_hidden_state")
    else:
        raise ValueError(f"model outputs {outputs} have neither sentence_embedding nor last_hidden_state")
    tok = tokenizer(model)
    limit = model._pysparse_text_limits  # type: ignore[attr-defined]  (default, position table)
    if max_length is None:
        max_length = limit[0]
    elif isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= limit[1]:
        raise ValueError(f"max_length must be an int in [2, {limit[1]}] (the model's position table), "
                         f"got {max_length!r}")
    tok.enable_truncation(max_length=max_length)
    # Sentences of similar length share a batch (less padding); results come back in input order.
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    result: list[np.ndarray | None] = [None] * len(sentences)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tok.encode_batch([sentences[i] for i in idx])
        feed = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        ys = model(*[feed[n] for n in names])
        y = ys[which] if isinstance(ys, tuple) else ys
        if outputs[which] == "last_hidden_state":
            y = _pool(y, feed["attention_mask"])
        for j, i in enumerate(idx):
            result[i] = y[j]
    return np.stack(result)  # type: ignore[arg-type]

