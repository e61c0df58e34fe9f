"""bench/bench_mnist_int8.py's code path (issue 14's MNIST target) on a small MLP and a slice of
real MNIST, so it runs in seconds: train a teacher, prune to 90% in (8, 4) blocks while
distilling, convert float32 / int8 / int8 everywhere, save and load, measure accuracy and file
bytes. The int8 model must predict like the fp32 student and its file must be a small fraction
of the dense fp32 weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_mnist_int8 as bench  # noqa: E402


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    from pysparse.datasets import load_mnist

    try:
        data = load_mnist()
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"MNIST data package not installed: {e}")
    (x, y), (xt, yt) = data["train"], data["test"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        teacher, student = bench.train(x[:5000], y[:5000], hidden=128, teacher_epochs=3, epochs=5, seed=3)
        res = bench.measure(teacher, student, xt[:2000], yt[:2000], tmp_path_factory.mktemp("mnist_int8"))
    finally:
        torch.set_num_threads(threads)
    return teacher, student, res


def test_student_is_90_percent_sparse_in_8x4_blocks(figures):
    _, student, _ = figures
    for m in (student[0], student[2]):
        w = m.weight.detach().numpy()
        assert abs(1 - np.count_nonzero(w) / w.size - 0.9) < 0.01
        blocks = w.reshape(w.shape[0] // 8, 8, w.shape[1] // 4, 4)
        live = np.abs(blocks).sum(axis=(1, 3)) > 0
        assert np.count_nonzero(w) > 0.9 * live.sum() * 32  # whole (8, 4) blocks
    assert np.count_nonzero(student[4].weight.detach().numpy()) == student[4].weight.numel()  # classifier dense


def test_int8_predicts_like_the_fp32_student_from_a_small_file(figures):
    _, _, res = figures
    assert res["acc_teacher"] > 85.0, res["acc_teacher"]
    assert res["acc_fp32_student"] > 80.0, res["acc_fp32_student"]
    for name in ("float32", "int8", "int8_blocks"):
        r = res[name]
        assert r["acc_runtime"] == r["acc_converted"], (name, r)  # the runtime runs the same kernels
    assert res["float32"]["acc_runtime"] == pytest.approx(res["acc_fp32_student"], abs=0.1)
    allq = res["int8_blocks"]
    assert allq["formats"] == ["0:bsr_int8(8,4)", "2:bsr_int8(8,4)", "4:dense_int8"], allq["formats"]
    assert abs(allq["minus_fp32_points"]) <= 0.5, res
    assert abs(res["int8"]["minus_fp32_points"]) <= 0.5, res
    # int8 at 90%: about 1/40 of the dense bytes plus indices, scales, fp32 biases and the graph
    assert allq["file_ratio"] < 0.06, allq
    assert allq["file_bytes"] < 0.5 * res["float32"]["file_bytes"]
