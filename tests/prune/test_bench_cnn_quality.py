"""bench/bench_cnn_quality.py's whole path (dense training, three pruned-while-distilled students,
channel removal, counting, results files) on tiny MobileNetV2 / ResNet-18 definitions and a tiny
IDX set written here: what the real run reports is computed, not assumed."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import bench_cnn_quality as bench  # noqa: E402
from _idx import write_fashion  # noqa: E402
from models.mobilenet_v2 import MobileNetV2  # noqa: E402
from models.resnet import resnet18  # noqa: E402

TINY = {
    "mnv2": bench.Arch("mnv2", lambda: MobileNetV2(num_classes=10, width=0.25), bench.pointwise, "tiny, random"),
    "rn": bench.Arch("rn", lambda: resnet18(num_classes=10, width=4), bench.convs_but_stem,
                     "tiny, random"),
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnnq")
    write_fashion(tmp / "fm", n_train=48, n_test=20, learnable=True)
    threads = torch.get_num_threads()
    argv = ["--archs", "mnv2", "rn", "--data", str(tmp / "fm"), "--out", str(tmp / "out" / "cnn_quality"),
            "--size", "16", "--batch", "8", "--dense-steps", "3", "--prune-steps", "4", "--channel-steps", "4",
            "--threads", str(threads), "--quiet"]
    try:
        results = bench.main(argv, archs=TINY)
    finally:
        torch.set_num_threads(threads)
    return tmp, results


def rows(result):
    return {r["variant"]: r for r in result["rows"]}


def test_every_variant_reports_accuracy_delta_params_flops_time(run):
    _, results = run
    assert [r["arch"] for r in results] == ["mnv2", "rn"]
    for result in results:
        got = rows(result)
        assert list(got) == list(bench.VARIANTS)
        dense = got["dense"]
        for row in got.values():
            assert 0.0 <= row["acc"] <= 100.0 and row["seconds"] > 0
            assert row["params"] >= row["nonzero"] > 0 and row["flops_dense"] >= row["flops"] > 0
            if row is not dense:
                assert row["delta"] == pytest.approx(row["acc"] - dense["acc"])
        assert dense["nonzero"] == dense["weights"]  # a dense model: nothing counted as pruned


def test_the_sparse_rows_reach_90_percent_of_the_pruned_layers(run):
    for result in run[1]:
        got = rows(result)
        for variant in ("90% unstructured", "90% (4,1)"):
            assert got[variant]["pruned_sparsity"] == pytest.approx(0.9, abs=0.01)
            # fewer nonzero weights and FLOPs than dense, same shapes
            assert got[variant]["nonzero"] < got["dense"]["nonzero"]
            assert got[variant]["flops"] < got["dense"]["flops"]
            assert got[variant]["params"] == got["dense"]["params"]


def test_the_channel_row_is_a_smaller_model_with_half_the_flops_and_the_masked_outputs(run):
    for result in run[1]:
        got = rows(result)
        ch, dense = got["channels, half FLOPs"], got["dense"]
        assert 0.40 <= ch["flops_dense"] / dense["flops_dense"] <= 0.50
        assert ch["params"] < dense["params"] and ch["nonzero"] == ch["weights"]  # channels cut out, not masked
        assert ch["max_abs_diff_removed_vs_masked"] <= bench.MATCH_ATOL
        assert abs(ch["acc"] - ch["acc_masked"]) <= 100 / 20  # at most one of the 20 images flips
        assert 0.0 < ch["channel_ratio"] < 0.9


def test_results_files_hold_the_table(run):
    tmp, results = run
    saved = json.loads((tmp / "out" / "cnn_quality.json").read_text())["results"]
    assert [r["arch"] for r in saved] == ["mnv2", "rn"]
    for r in saved:
        assert {"size", "batch", "train_images", "test_images", "seconds", "load_start", "load_end", "date"} <= set(r)
        assert r["train_images"] == 48 and r["test_images"] == 20 and r["size"] == 16
    md = (tmp / "out" / "cnn_quality.md").read_text()
    assert md.count("| channels, half FLOPs |") == 2 and "| 90% (4,1) |" in md


def test_merge_keeps_the_other_architectures_rows(run, tmp_path):
    _, results = run
    stem = tmp_path / "cnn_quality"
    bench.write(results, stem, merge=False)
    bench.write([dict(results[1], seconds=1.0)], stem, merge=True)  # the same (arch, tag): replaced
    bench.write([dict(results[0], tag="longer", seconds=2.0)], stem, merge=True)  # another tag: beside it
    saved = json.loads(stem.with_suffix(".json").read_text())["results"]
    assert [(r["arch"], r["tag"], r["seconds"]) for r in saved] == [
        ("mnv2", None, results[0]["seconds"]), ("rn", None, 1.0), ("mnv2", "longer", 2.0)]
    assert "## mnv2, longer (" in stem.with_suffix(".md").read_text()


def test_batches_are_3_channel_normalised_resized_and_reshuffled():
    x = torch.rand(10, 28, 28).numpy()
    y = torch.arange(10).numpy()
    train = bench.Batches(x, y, batch=4, size=16, train=True, seed=0)
    assert len(train) == 2  # drops the last partial batch
    (a, ya), _ = list(train)
    assert a.shape == (4, 3, 16, 16)
    grey = a * bench.STD + bench.MEAN  # the same grey image in all three channels, in [0, 1]
    torch.testing.assert_close(grey[:, 0], grey[:, 2]) and torch.testing.assert_close(grey[:, 1], grey[:, 2])
    assert grey.min() >= -1e-6 and grey.max() <= 1 + 1e-6
    (b, yb), _ = list(train)
    assert not torch.equal(ya, yb)  # a new order each pass
    test = bench.Batches(x, y, batch=4, size=28, train=False)
    assert len(test) == 3 and torch.equal(torch.cat([t for _, t in test]), torch.arange(10))
