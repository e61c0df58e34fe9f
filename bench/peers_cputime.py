"""CPU time of the dense-int8 peers on all-MiniLM-L6-v2 (batch 1, 1 thread): onnxruntime dynamic int8
(per-channel QInt8, quantize_dynamic) and OpenVINO int8 (NNCF static PTQ, 8 calibration windows,
model_type TRANSFORMER), timed by process CPU time (robust on a loaded shared machine; compare
with bench/profile_runtime.py, which times pysparse by thread CPU time). A quick check, not
bench_peers.py: no output check, one process per call.

    python bench/peers_cputime.py ort|ov INPUTS.npz   (dense.onnx: the legacy-exporter opset-13
    ONNX of the dense model, as bench_peers.py exports it, at /tmp/q8/peers/dense.onnx)
"""
import sys, time, numpy as np, os
which = sys.argv[1]
z = np.load(sys.argv[2] if len(sys.argv) > 2 else "/tmp/q8/peers/in128.npz"); names = ["input_ids", "attention_mask", "token_type_ids"]
feed = {k: z[k][:1].astype(np.int64) for k in names}
if which == "ort":
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    if not os.path.exists("/tmp/q8/peers/ort_int8.onnx"):
        quantize_dynamic("/tmp/q8/peers/dense.onnx", "/tmp/q8/peers/ort_int8.onnx", per_channel=True, weight_type=QuantType.QInt8)
    so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
    s = ort.InferenceSession("/tmp/q8/peers/ort_int8.onnx", so, providers=["CPUExecutionProvider"])
    run = lambda: s.run(None, feed)
else:
    import openvino as ov, nncf
    core = ov.Core()
    calib = [{k: z[k][i:i + 1].astype(np.int64) for k in names} for i in range(8)]
    q = nncf.quantize(core.read_model("/tmp/q8/peers/dense.onnx"), nncf.Dataset(calib), subset_size=8, model_type=nncf.ModelType.TRANSFORMER)
    cm = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": 1})
    req = cm.create_infer_request()
    run = lambda: req.infer(feed)
ts = []
for r in range(7):
    run(); t = time.process_time(); n = 0
    while time.process_time() - t < 0.2: run(); n += 1
    ts.append((time.process_time() - t) / n)
print(which, f"{np.median(ts)*1e3:.2f} ms (process CPU time, median of 7)", [round(x * 1e3, 2) for x in ts])
