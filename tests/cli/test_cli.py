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

from _model_files import hostile, sparse_mlp, write
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


def _one_line_error(capsys, *words):
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pysparse: error:"), captured.err
    assert all(w in err[0] for w in words), err[0]
    return err[0]


@pytest.mark.parametrize("threads", ["0", "257", str(2**40), str(2**64)])
def test_bench_threads_out_of_range(model_file, capsys, threads):
    assert main(["bench", str(model_file[0]), "--threads", threads, "--rounds", "3"]) == 2
    _one_line_error(capsys, "--threads in [1, 256]")


def test_bench_rounds_and_warmup_bounded(model_file, capsys):
    assert main(["bench", str(model_file[0]), "--rounds", str(2**40)]) == 2
    _one_line_error(capsys, "--rounds")
    assert main(["bench", str(model_file[0]), "--warmup", str(2**40)]) == 2
    _one_line_error(capsys, "--warmup")


def test_load_errors_are_one_line(tmp_path, capsys):
    """A div by a zero constant raised ZeroDivisionError through the CLI (a traceback)."""
    path = write(tmp_path / "div.pspz", *hostile("div-by-zero"))
    assert main(["inspect", str(path)]) == 2
    _one_line_error(capsys, "divides 1 by zero")


def test_run_on_a_model_with_an_int_output(tmp_path, capsys):
    path = write(tmp_path / "size.pspz", *hostile("size-output"))
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    assert main(["run", str(path), "-i", str(tmp_path / "x.npy")]) == 0
    assert "s: shape (), mean 3" in capsys.readouterr().out
    assert main(["run", str(path), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy") == 3


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_run_output_that_cannot_be_written_fails(model_file, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 300), np.float32))
    assert main(["run", str(model_file[0]), "-i", str(tmp_path / "x.npy"), "-o", "/dev/full"]) == 2
    _one_line_error(capsys, "cannot write /dev/full")


def test_inspect_fifo_refuses_at_once(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    os.mkfifo(tmp_path / "m.pspz")
    python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
    r = subprocess.run(python + ["-m", "pysparse.cli", "inspect", str(tmp_path / "m.pspz")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2 and "not a regular file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


_MAIN_IN_LIMIT = """
import resource, sys
limit = 2 << 30  # 2 GiB of address space: a regression that densifies fails here, not the machine
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from pysparse.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(bool(os.environ.get("PYSPARSE_TEST_PYTHON")), reason="an emulator reserves its own address space")
def test_inspect_and_bench_of_a_huge_empty_matrix(tmp_path):
    """33 KB declaring an empty 65536 x 65536 weight: inspect without densifying (it took 16 GiB),
    bench refuses the 16 GiB dense twin in one line."""
    path = write(tmp_path / "huge.pspz", *hostile("huge-empty-linear"))

    def cli(*argv):
        return subprocess.run([sys.executable, "-c", _MAIN_IN_LIMIT, *argv], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)

    r = cli("inspect", str(path))
    assert r.returncode == 0 and "65536x65536" in r.stdout, r.stderr
    r = cli("bench", str(path), "--rounds", "3")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "dense twin" in r.stderr and "16.0 GiB" in r.stderr
