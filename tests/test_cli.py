"""The `pysparse` command: info, inspect, bench, run, and one-line errors with status 2."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

import pysparse as ps
from pysparse.cli import main

from _model_files import sparse_mlp, write
from pstest import F32_SUM_RTOL, relerr


@pytest.fixture
def model_file(rng, tmp_path):
    graph, arrays, ref = sparse_mlp(rng)
    return write(tmp_path / "mlp.pspz", graph, arrays), ref


def test_info_names_isa_kernels_and_threads(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    info = ps.cpu_info()
    assert f"isa in use: {info['isa']}" in out
    assert info["kernels"]["csr_n1"] in out
    assert f"threads: {info['threads']}" in out


def test_inspect_lists_layers_formats_and_bytes(model_file, capsys):
    path, _ = model_file
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("fc")}
    assert [lines[n][2] for n in ("fc1", "fc2", "fc3")] == ["csr", "bsr", "nm"]
    assert f"{os.path.getsize(path):,} bytes" in out
    m = ps.load(path)
    assert lines["fc1"][4] == f"{m.layers[0].sparsity:.1%}"


def test_run_writes_outputs(model_file, tmp_path, rng, capsys):
    path, ref = model_file
    x = rng.standard_normal((4, 300)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    assert relerr(np.load(tmp_path / "y.npy"), ref(x)) <= F32_SUM_RTOL
    assert "(4, 8)" in capsys.readouterr().out


def test_bench_reports_both_variants(model_file, capsys):
    path, _ = model_file
    previous = ps.get_num_threads()
    assert main(["bench", str(path), "--batch", "2", "--threads", "1", "--rounds", "4", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "batch 2, threads 1, 4 rounds" in out
    assert "sparse" in out and "dense" in out and "speedup" in out
    assert ps.get_num_threads() == previous


@pytest.mark.parametrize(
    "argv, message",
    [
        (["inspect", "missing.pspz"], "No such file"),
        (["run", "{model}", "--input", "missing.npy"], "cannot read missing.npy"),
        (["run", "{model}", "--input", "{bad_x}"], "must have shape"),
        (["run", "{model}", "--input", "{x}", "-o", "a.npy", "-o", "b.npy"], "1 output"),
        (["bench", "{model}", "--rounds", "1"], "--rounds"),
        (["bench", "{model}", "--batch", "many"], "invalid int"),
        (["inspect", "{x}"], "not fit the file|truncated"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_errors_are_one_line_with_status_2(argv, message, model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 300), np.float32))
    np.save(tmp_path / "bad_x.npy", np.zeros((1, 7), np.float32))
    subs = {"model": str(model_file[0]), "x": str(tmp_path / "x.npy"), "bad_x": str(tmp_path / "bad_x.npy")}
    assert main([a.format(**subs) for a in argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pysparse: error:"), captured.err
    assert any(m in err[0] for m in message.split("|")), err[0]


def test_module_entry_point_in_a_subprocess(model_file, tmp_path):
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    ok = subprocess.run(python + ["-m", "pysparse.cli", "inspect", str(model_file[0])],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "csr" in ok.stdout
    bad = subprocess.run(python + ["-m", "pysparse.cli", "inspect", str(tmp_path / "nope.pspz")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
