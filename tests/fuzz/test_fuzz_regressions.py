"""Inputs the fuzzers (tests/fuzz/) found: each must now give its documented outcome, cheaply.

tests/fuzz/regressions/ holds one file per finding:
  *.json  a call of the raw-array API (fuzz_arrays): the constructor, its arguments
          (arrays as dtype, length and repeated values) and the error it must raise;
  *.pspz  a model file (fuzz_load): ps.load must raise ModelFileError, or load and run.
Each runs in a child process under an address-space limit (1 GiB over the
interpreter's own) and a CPU limit, so an input that once allocated gigabytes or
looped fails here instead of taking the machine with it. PENDING pins the findings
whose fix has not landed yet (strict xfail: XPASS once fixed; then drop the entry).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from limits import run_limited

FUZZ = Path(__file__).parent
FILES = sorted(p for p in (FUZZ / "regressions").iterdir() if p.suffix in (".json", ".pspz"))
PENDING: dict[str, str] = {}

_REPLAY = r"""
fuzz_dir, path = ARGS

def arg(a):
    if isinstance(a, dict):
        return np.resize(np.array(a["values"], dtype=a["dtype"]), a["len"])
    return tuple(a) if isinstance(a, list) else a

if path.endswith(".json"):
    spec = json.load(open(path))
    report(**outcome_of(lambda: getattr(ps, spec["call"])(*[arg(a) for a in spec["args"]])))
else:
    sys.path.insert(0, fuzz_dir)
    import fuzz_load
    report(**outcome_of(lambda: fuzz_load.check(open(path, "rb").read())))
"""


def _params():
    out = []
    for f in FILES:
        marks = [pytest.mark.xfail(strict=True, reason=PENDING[f.stem])] if f.stem in PENDING else []
        out.append(pytest.param(f, marks=marks, id=f.name))
    return out


def test_regressions_are_there():
    assert FILES, "tests/fuzz/regressions is empty"
    assert set(PENDING) <= {f.stem for f in FILES}


@pytest.mark.skipif(bool(os.environ.get("PYSPARSE_SANITIZE") or os.environ.get("PYSPARSE_TEST_PYTHON")),
                    reason="an address-space limit needs a native interpreter (ASan and emulators reserve their own)")
@pytest.mark.parametrize("path", _params())
def test_regression_gives_its_documented_outcome(path):
    got = run_limited(_REPLAY, str(FUZZ), str(path))
    assert "outcome" not in got, got  # the child was killed, crashed or timed out
    if path.suffix == ".json":
        spec = json.loads(path.read_text())
        assert got["type"] == spec["raises"] and spec["match"] in got["message"], got
    else:  # fuzz_load.check raises on anything outside the contract
        assert got["type"] is None, got
